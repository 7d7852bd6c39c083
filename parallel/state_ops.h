// Small operations on [B,H,D,E] fp32 state buffers, on the host or on a GPU:
// the arithmetic of the combine operator (docs/algorithm.md §3)
//
//     (a1, X1) ⊕ (a2, X2) = (a1·a2,  a2·X1 + X2)
//
// reduces to one primitive, y = α_h·x + y per (b,h) with a per-head scalar
// α_h = λ_h^len (axpy_decay). The lengths are known on the host (shape
// agreement); α_h is computed where the data lives (host loop, or inside the
// CUDA kernel from the device decay rates); only the X parts travel.
//
// Device::kCpu: plain loops. Device::kCuda: a tiny elementwise kernel on the
// given stream (parallel/combine_cuda.cu; compiled only with CUDA), with the
// length passed by value in the launch, so nothing synchronises the host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/attention.h"

namespace lightring::parallel {

using kernels::Device;

// An owned state-sized fp32 buffer on the host or the current CUDA device.
// Device buffers are stream-ordered (cudaMallocAsync / cudaFreeAsync on
// `stream`): freeing one never blocks the host, and is ordered after the work
// on that stream, including communication the stream was made to wait for.
class StateBuffer {
 public:
  StateBuffer() = default;
  StateBuffer(Device device, size_t count, void* stream = nullptr);
  ~StateBuffer();
  StateBuffer(const StateBuffer&) = delete;
  StateBuffer& operator=(const StateBuffer&) = delete;
  StateBuffer(StateBuffer&& other) noexcept;
  StateBuffer& operator=(StateBuffer&& other) noexcept;

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t count() const { return count_; }

 private:
  Device device_ = Device::kCpu;
  void* stream_ = nullptr;
  float* data_ = nullptr;
  size_t count_ = 0;
  std::vector<float> host_;
};

// y = 0 (count values).
void fill_zero(Device device, float* y, size_t count, void* stream);
// dst = src (count values).
void copy_state(Device device, float* dst, const float* src, size_t count, void* stream);
// y[b,h,i] = alpha[h]·x[b,h,i] + y[b,h,i] for b < batch, h < heads, i < per_head.
void axpy_heads(Device device, float* y, const float* x, const std::vector<float>& alpha,
                int64_t batch, int64_t heads, int64_t per_head, void* stream);
// y[b,h,i] = λ_h^len·x[b,h,i] + y[b,h,i] with λ_h = exp(−decay[h]): the X part
// of the combine. `decay` is [H] fp32 in `device` memory (nullptr: λ = 1). On
// CUDA the scalar λ_h^len = exp(−s_h·len) is computed inside the kernel (in
// double, rounded to float, as kernels::segment_decay does), so a combine
// never waits for the host and the host never waits for the compute stream.
void axpy_decay(Device device, float* y, const float* x, const float* decay, int64_t batch,
                int64_t heads, int64_t per_head, int64_t len, void* stream);
// Copies `count` fp32 values of a device (or host) array to the host.
std::vector<float> to_host(Device device, const float* src, size_t count, void* stream);

// Records a cudaEvent_t on `stream` (Device::kCuda, event not null); a no-op otherwise.
void record_event(Device device, void* event, void* stream);

// λ_h^len for every head from host decay rates (nullptr: all ones).
std::vector<float> decay_pow(const std::vector<float>& decay_host, int64_t heads, int64_t len);

namespace cuda_ops {
// Defined in parallel/combine_cuda.cu (LIGHTRING_WITH_CUDA builds only).
float* allocate(size_t count, void* stream);
void release(float* p, void* stream);
void fill_zero(float* y, size_t count, void* stream);
void copy(float* dst, const float* src, size_t count, void* stream);
void axpy_heads(float* y, const float* x, const float* alpha, int64_t batch, int64_t heads,
                int64_t per_head, void* stream);
void to_host(float* dst_host, const float* src, size_t count, void* stream);
void record_event(void* event, void* stream);
void axpy_decay(float* y, const float* x, const float* decay, int64_t batch, int64_t heads,
                int64_t per_head, int64_t len, void* stream);
}  // namespace cuda_ops

}  // namespace lightring::parallel
