// Shard buffers of lightring-bench (host vectors or cudaMalloc'd memory).
#include "launch/bench_shard.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#ifdef LIGHTRING_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#endif

#include "core/error.h"
#include "kernels/cpu/element.h"
#include "launch/bench_fill.h"

namespace lightring::launch {

namespace {
size_t g_tracked = 0, g_tracked_peak = 0, g_limit = 0;
}  // namespace

size_t tracked_bytes() {
  return g_tracked;
}
size_t tracked_peak_bytes() {
  return g_tracked_peak;
}
void reset_tracked_peak() {
  g_tracked_peak = g_tracked;
}
void set_allocation_limit(size_t bytes) {
  g_limit = bytes;
}

Buffer::Buffer(Device device, size_t bytes) : device_(device), bytes_(bytes) {
  LR_CHECK(g_limit == 0 || g_tracked + bytes <= g_limit, "out of memory: allocating ", bytes,
           " bytes with ", g_tracked, " held exceeds the limit of ", g_limit,
           " bytes (LIGHTRING_BENCH_MEM_LIMIT)");
  if (device == Device::kCpu) {
    ptr_ = std::calloc(std::max<size_t>(bytes, 1), 1);
    LR_CHECK(ptr_ != nullptr, "out of memory: host allocation of ", bytes, " bytes failed");
  } else {
#ifdef LIGHTRING_WITH_CUDA
    const cudaError_t e = cudaMalloc(&ptr_, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
      cudaGetLastError();  // an allocation failure is not sticky: clear it, keep the device
      ptr_ = nullptr;
      LR_THROW("out of memory: cudaMalloc of ", bytes, " bytes failed (", cudaGetErrorString(e),
               ") with ", g_tracked, " bytes held by the benchmark");
    }
    LR_CUDA_CHECK(cudaMemset(ptr_, 0, bytes));
#else
    LR_THROW("--backend cuda: this lightring-bench was built without CUDA");
#endif
  }
  g_tracked += bytes;
  g_tracked_peak = std::max(g_tracked_peak, g_tracked);
}

Buffer::~Buffer() {
  if (!ptr_) return;
  g_tracked -= bytes_;
  if (device_ == Device::kCpu) {
    std::free(ptr_);
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  cudaFree(ptr_);
#endif
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  std::swap(device_, o.device_);
  std::swap(ptr_, o.ptr_);
  std::swap(bytes_, o.bytes_);
  return *this;
}

void Buffer::upload(const void* host, size_t bytes) {
  LR_CHECK(bytes <= bytes_, "upload of ", bytes, " bytes into a buffer of ", bytes_);
  if (device_ == Device::kCpu) {
    std::memcpy(ptr_, host, bytes);
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  LR_CUDA_CHECK(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
#endif
}

std::vector<uint8_t> Buffer::download() const {
  std::vector<uint8_t> out(bytes_);
  if (device_ == Device::kCpu) {
    std::memcpy(out.data(), ptr_, bytes_);
    return out;
  }
#ifdef LIGHTRING_WITH_CUDA
  LR_CUDA_CHECK(cudaMemcpy(out.data(), ptr_, bytes_, cudaMemcpyDeviceToHost));
#endif
  return out;
}

Shard::Shard(Device dev, const ShardShape& shape) : s(shape), device(dev) {
  const size_t es = kernels::dtype_size(s.dtype);
  const size_t bh = static_cast<size_t>(s.batch * s.heads), n = s.seqlen;
  q = Buffer(dev, bh * n * s.qk_dim * es);
  k = Buffer(dev, bh * n * s.qk_dim * es);
  v = Buffer(dev, bh * n * s.v_dim * es);
  d_o = Buffer(dev, bh * n * s.v_dim * es);
  o = Buffer(dev, bh * n * s.v_dim * es);
  dq = Buffer(dev, bh * n * s.qk_dim * es);
  dk = Buffer(dev, bh * n * s.qk_dim * es);
  dv = Buffer(dev, bh * n * s.v_dim * es);
  decay = Buffer(dev, s.heads * sizeof(float));
  for (Buffer* b : {&s0, &g, &s_in, &final_state, &ds0}) *b = Buffer(dev, state_bytes());
}

size_t Shard::state_bytes() const {
  return static_cast<size_t>(s.batch * s.heads * s.qk_dim * s.v_dim) * sizeof(float);
}

kernels::ForwardParams Shard::forward_params(void* stream) {
  kernels::ForwardParams p;
  p.device = device;
  p.dtype = s.dtype;
  p.batch = s.batch;
  p.heads = s.heads;
  p.seqlen = s.seqlen;
  p.qk_dim = s.qk_dim;
  p.v_dim = s.v_dim;
  p.decay = use_decay ? decay.f32() : nullptr;
  p.stream = stream;
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.o = o.data();
  p.q_stride = p.k_stride = kernels::contiguous_bhnd(s.heads, s.seqlen, s.qk_dim);
  p.v_stride = p.o_stride = kernels::contiguous_bhnd(s.heads, s.seqlen, s.v_dim);
  p.initial_state = use_s0 ? s0.f32() : nullptr;
  p.final_state = final_state.f32();
  if (use_docs) {
    p.docs = docs.view();
    p.doc_initial_states = use_doc_states ? doc_s0.f32() : nullptr;
    p.doc_final_states = use_doc_states ? doc_final.f32() : nullptr;
  }
  return p;
}

kernels::BackwardParams Shard::backward_params(void* stream) {
  const kernels::ForwardParams f = forward_params(stream);
  kernels::BackwardParams p =
      kernels::backward_params(f, d_o.data(), dq.data(), dk.data(), dv.data());
  p.initial_state = s_in.f32();
  p.d_final_state = use_g ? g.f32() : nullptr;
  p.d_initial_state = ds0.f32();
  if (use_docs) {
    p.doc_initial_states = f.doc_initial_states;
    p.d_doc_final_states = use_doc_states ? doc_g.f32() : nullptr;
    p.d_doc_initial_states = use_doc_states ? d_doc_s0.f32() : nullptr;
  }
  return p;
}

void device_synchronize(Device device) {
#ifdef LIGHTRING_WITH_CUDA
  if (device == Device::kCuda) LR_CUDA_CHECK(cudaDeviceSynchronize());
#endif
  (void)device;
}

std::string device_description(Device device) {
#ifdef LIGHTRING_WITH_CUDA
  if (device == Device::kCuda) {
    int dev = 0;
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
      return prop.name;
    return "cuda";
  }
#endif
  (void)device;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  return "cpu";
}

std::vector<float> bytes_to_float(const std::vector<uint8_t>& bytes, DType dtype) {
  using namespace kernels::cpu;
  const size_t n = bytes.size() / kernels::dtype_size(dtype);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DType::kFloat32:
        out[i] = reinterpret_cast<const float*>(bytes.data())[i];
        break;
      case DType::kBFloat16:
        out[i] = to_float(reinterpret_cast<const bf16*>(bytes.data())[i]);
        break;
      case DType::kFloat16:
        out[i] = to_float(reinterpret_cast<const fp16*>(bytes.data())[i]);
        break;
    }
  }
  return out;
}

std::vector<uint8_t> float_to_bytes(const std::vector<float>& x, DType dtype) {
  using namespace kernels::cpu;
  std::vector<uint8_t> out(x.size() * kernels::dtype_size(dtype));
  for (size_t i = 0; i < x.size(); ++i) {
    switch (dtype) {
      case DType::kFloat32:
        reinterpret_cast<float*>(out.data())[i] = x[i];
        break;
      case DType::kBFloat16:
        reinterpret_cast<bf16*>(out.data())[i] = from_float<bf16>(x[i]);
        break;
      case DType::kFloat16:
        reinterpret_cast<fp16*>(out.data())[i] = from_float<fp16>(x[i]);
        break;
    }
  }
  return out;
}

void fill_f32(Buffer& b, size_t count, uint64_t seed) {
  LR_CHECK(count * sizeof(float) <= b.bytes(), "fill_f32: ", count, " values into ", b.bytes(),
           " bytes");
  const std::vector<uint8_t> bytes = bench_bytes(count, DType::kFloat32, seed);
  b.upload(bytes.data(), bytes.size());
}

#ifndef LIGHTRING_WITH_CUDA
void fill_device(void*, size_t, DType, uint64_t, void*) {
  LR_THROW("--backend cuda: this lightring-bench was built without CUDA");
}
#endif

std::vector<uint8_t> bench_bytes(size_t numel, DType dtype, uint64_t seed) {
  std::vector<float> x(numel);
  for (size_t i = 0; i < numel; ++i) x[i] = test::uniform_value(seed, i);
  return float_to_bytes(x, dtype);
}

}  // namespace lightring::launch
