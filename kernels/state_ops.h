// Operations on [B,H,D,E] fp32 state buffers in host or device memory: what the
// sequence-parallel schedules (parallel/) do with states between the local
// passes. The arithmetic is one combine of docs/algorithm.md §3,
//
//     (a1, X1) ⊕ (a2, X2) = (a1·a2,  a2·X1 + X2),   a2 = λ_h^len,
//
// reduced to y <- λ_h^len·x + y per (b, h) (axpy_decay). The lengths are known
// on the host; λ_h^len is computed where the data lives (host loop, or inside
// the CUDA kernel from the device decay rates, kernels/cuda/combine.cu), so a
// combine never waits for the host. Only the X parts travel.
//
// Device::kCpu: plain loops. Device::kCuda: work enqueued on `stream` (a
// cudaStream_t, nullptr = the default stream); nothing here synchronises the
// host. A Device::kCuda call in a build without CUDA throws lightring::Error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/attention.h"

namespace lightring::kernels {

// An owned state-sized fp32 buffer on the host or the current CUDA device,
// zero-initialised on the host. Device buffers are stream-ordered
// (cudaMallocAsync / cudaFreeAsync on `stream`): freeing one never blocks the
// host, and is ordered after the work on that stream, including communication
// the stream was made to wait for. `stream` must outlive the buffer.
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
// dst = src (count values; nothing when dst == src).
void copy_state(Device device, float* dst, const float* src, size_t count, void* stream);
// y[b,h,i] = λ_h^len·x[b,h,i] + y[b,h,i] for b < batch, h < heads, i < per_head,
// with λ_h^len = exp(−decay[h]·len) in double, rounded to float (segment_decay).
// `decay` is [heads] fp32 in `device` memory (nullptr: λ = 1).
void axpy_decay(Device device, float* y, const float* x, const float* decay, int64_t batch,
                int64_t heads, int64_t per_head, int64_t len, void* stream);
// Records a cudaEvent_t on `stream` (Device::kCuda, event not null); a no-op otherwise.
void record_event(Device device, void* event, void* stream);

}  // namespace lightring::kernels
