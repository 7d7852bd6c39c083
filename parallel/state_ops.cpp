// Host side of the state operations; CUDA work is forwarded to combine_cuda.cu.
#include "parallel/state_ops.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "kernels/error.h"

namespace lightring::parallel {

#ifndef LIGHTRING_WITH_CUDA
namespace {
[[noreturn]] void no_cuda(const char* what) {
  LR_THROW(what, ": this build has no CUDA support (configure with nvcc to use Device::kCuda)");
}
}  // namespace
#endif

StateBuffer::StateBuffer(Device device, size_t count, void* stream)
    : device_(device), stream_(stream), count_(count) {
  if (device == Device::kCpu) {
    host_.assign(count, 0.0f);
    data_ = host_.data();
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  data_ = cuda_ops::allocate(count, stream);
#else
  no_cuda("StateBuffer");
#endif
}

StateBuffer::~StateBuffer() {
#ifdef LIGHTRING_WITH_CUDA
  if (device_ == Device::kCuda && data_) cuda_ops::release(data_, stream_);
#endif
}

StateBuffer::StateBuffer(StateBuffer&& o) noexcept
    : device_(o.device_),
      stream_(o.stream_),
      data_(o.data_),
      count_(o.count_),
      host_(std::move(o.host_)) {
  if (device_ == Device::kCpu) data_ = host_.data();
  o.data_ = nullptr;
  o.count_ = 0;
}

StateBuffer& StateBuffer::operator=(StateBuffer&& o) noexcept {
  if (this != &o) {
    StateBuffer tmp(std::move(*this));
    device_ = o.device_;
    stream_ = o.stream_;
    count_ = o.count_;
    host_ = std::move(o.host_);
    data_ = device_ == Device::kCpu ? host_.data() : o.data_;
    o.data_ = nullptr;
    o.count_ = 0;
  }
  return *this;
}

void fill_zero(Device device, float* y, size_t count, void* stream) {
  if (device == Device::kCpu) {
    std::fill(y, y + count, 0.0f);
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  cuda_ops::fill_zero(y, count, stream);
#else
  (void)stream;
  no_cuda("fill_zero");
#endif
}

void copy_state(Device device, float* dst, const float* src, size_t count, void* stream) {
  if (dst == src) return;
  if (device == Device::kCpu) {
    std::memcpy(dst, src, count * sizeof(float));
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  cuda_ops::copy(dst, src, count, stream);
#else
  (void)stream;
  no_cuda("copy_state");
#endif
}

void axpy_heads(Device device, float* y, const float* x, const std::vector<float>& alpha,
                int64_t batch, int64_t heads, int64_t per_head, void* stream) {
  LR_CHECK(static_cast<int64_t>(alpha.size()) == heads, "axpy_heads: ", alpha.size(),
           " scalars for ", heads, " heads");
  if (device == Device::kCpu) {
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h) {
        const float a = alpha[h];
        const int64_t off = (b * heads + h) * per_head;
        for (int64_t i = 0; i < per_head; ++i) y[off + i] = a * x[off + i] + y[off + i];
      }
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  cuda_ops::axpy_heads(y, x, alpha.data(), batch, heads, per_head, stream);
#else
  (void)stream;
  no_cuda("axpy_heads");
#endif
}

void axpy_decay(Device device, float* y, const float* x, const float* decay, int64_t batch,
                int64_t heads, int64_t per_head, int64_t len, void* stream) {
  if (device == Device::kCpu) {
    std::vector<float> alpha(heads);
    kernels::segment_decay(decay, heads, len, alpha.data());
    axpy_heads(device, y, x, alpha, batch, heads, per_head, stream);
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  cuda_ops::axpy_decay(y, x, decay, batch, heads, per_head, len, stream);
#else
  (void)stream;
  no_cuda("axpy_decay");
#endif
}

std::vector<float> to_host(Device device, const float* src, size_t count, void* stream) {
  std::vector<float> out(count);
  if (count == 0 || src == nullptr) return out;
  if (device == Device::kCpu) {
    std::memcpy(out.data(), src, count * sizeof(float));
    return out;
  }
#ifdef LIGHTRING_WITH_CUDA
  cuda_ops::to_host(out.data(), src, count, stream);
#else
  (void)stream;
  no_cuda("to_host");
#endif
  return out;
}

void record_event(Device device, void* event, void* stream) {
  if (device != Device::kCuda || event == nullptr) return;
#ifdef LIGHTRING_WITH_CUDA
  cuda_ops::record_event(event, stream);
#else
  (void)stream;
  no_cuda("record_event");
#endif
}

std::vector<float> decay_pow(const std::vector<float>& decay_host, int64_t heads, int64_t len) {
  std::vector<float> out(heads);
  kernels::segment_decay(decay_host.empty() ? nullptr : decay_host.data(), heads, len, out.data());
  return out;
}

}  // namespace lightring::parallel
