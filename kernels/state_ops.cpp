// Host side of kernels/state_ops.h: CPU loops, and CUDA runtime calls plus the
// combine kernel (kernels/cuda/combine.cu) for device buffers.
#include "kernels/state_ops.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/error.h"
#ifdef LIGHTRING_WITH_CUDA
#include "core/cuda_check.h"
#include "kernels/cuda/scan.h"
#endif

namespace lightring::kernels {

namespace {
#ifdef LIGHTRING_WITH_CUDA
cudaStream_t as_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}
#else
[[noreturn]] void no_cuda(const char* what) {
  LR_THROW(what, ": this build has no CUDA support (configure with nvcc to use Device::kCuda)");
}
#endif
}  // namespace

StateBuffer::StateBuffer(Device device, size_t count, void* stream)
    : device_(device), stream_(stream), count_(count) {
  if (device == Device::kCpu) {
    host_.assign(count, 0.0f);
    data_ = host_.data();
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  void* p = nullptr;
  LR_CUDA_CHECK(cudaMallocAsync(&p, std::max<size_t>(count, 1) * sizeof(float), as_stream(stream)));
  data_ = static_cast<float*>(p);
#else
  no_cuda("StateBuffer");
#endif
}

StateBuffer::~StateBuffer() {
#ifdef LIGHTRING_WITH_CUDA
  // No check: a destructor must not throw, and a sticky error of earlier work
  // surfaces at the next checked call on the stream.
  if (device_ == Device::kCuda && data_) cudaFreeAsync(data_, as_stream(stream_));
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
  LR_CUDA_CHECK(cudaMemsetAsync(y, 0, count * sizeof(float), as_stream(stream)));
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
  LR_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                as_stream(stream)));
#else
  (void)stream;
  no_cuda("copy_state");
#endif
}

void axpy_decay(Device device, float* y, const float* x, const float* decay, int64_t batch,
                int64_t heads, int64_t per_head, int64_t len, void* stream) {
  if (device == Device::kCpu) {
    std::vector<float> alpha(heads);
    segment_decay(decay, heads, len, alpha.data());
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h) {
        const float a = alpha[h];
        const int64_t off = (b * heads + h) * per_head;
        for (int64_t i = 0; i < per_head; ++i) y[off + i] = a * x[off + i] + y[off + i];
      }
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  cuda::axpy_decay(y, x, decay, batch, heads, per_head, len, stream);
#else
  (void)stream;
  no_cuda("axpy_decay");
#endif
}

void record_event(Device device, void* event, void* stream) {
  if (device != Device::kCuda || event == nullptr) return;
#ifdef LIGHTRING_WITH_CUDA
  LR_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), as_stream(stream)));
#else
  (void)stream;
  no_cuda("record_event");
#endif
}

}  // namespace lightring::kernels
