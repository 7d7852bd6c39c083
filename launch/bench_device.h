// Device plumbing of lightring-bench: the compute stream, event timers, the
// memory probe and the copy-bandwidth ceiling (definitions: launch/README.md).
#pragma once

#include <cstddef>

#include "kernels/attention.h"

namespace lightring::launch {

using kernels::Device;

// The compute stream of a rank: a non-blocking CUDA stream (Device::kCuda) or
// nullptr (CPU). The communicator has its own stream; the two are ordered by
// events inside the communicator, never by the legacy default stream.
class ComputeStream {
 public:
  explicit ComputeStream(Device device);
  ~ComputeStream();
  ComputeStream(const ComputeStream&) = delete;
  ComputeStream& operator=(const ComputeStream&) = delete;
  void* get() const { return stream_; }
  void synchronize() const;  // waits for the stream (no-op on the CPU)

 private:
  Device device_;
  void* stream_ = nullptr;
};

// Two CUDA events (begin, end) whose elapsed time is read after the work is
// done. On the CPU both are null and elapsed_ms() is 0.
class EventPair {
 public:
  explicit EventPair(Device device);
  ~EventPair();
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  void* begin() const { return begin_; }
  void* end() const { return end_; }
  // Milliseconds between the two recorded events (waits for the end event).
  double elapsed_ms() const;

 private:
  void* begin_ = nullptr;
  void* end_ = nullptr;
};

// Peak memory of one row.
//   CUDA: in_use_before = device memory in use when the row starts (total −
//         free: the CUDA context, NCCL's buffers after the connecting warm-up,
//         nothing of an earlier row: the stream-ordered pool is trimmed first);
//         alloc_peak = high-water mark of the benchmark's Buffers + high-water
//         mark of the default stream-ordered pool (cudaMemPoolAttrUsedMemHigh:
//         kernel workspaces and state buffers). peak = in_use_before + alloc_peak
//         (an upper bound: the two high-water marks may fall at different times).
//   CPU:  peak = peak resident set of the process since the row started
//         (VmHWM after writing 5 to /proc/self/clear_refs); alloc_peak = the
//         high-water mark of the Buffers.
class MemoryProbe {
 public:
  explicit MemoryProbe(Device device) : device_(device) {}
  void begin_row();
  double peak_bytes() const;
  double alloc_peak_bytes() const;

 private:
  Device device_;
  double in_use_before_ = 0;
};

// The copy ceiling in GB/s (bytes read + written per second): the best of a
// few cudaMemcpyAsync device-to-device copies of `bytes` (CUDA), or memcpy of
// host buffers (CPU).
double copy_bandwidth_GBps(Device device, size_t bytes);

// Device memory in use on the current GPU (total − free, every process's), in bytes; 0 on the
// CPU. The start-up marks of lightring-bench (RunInfo::startup_bytes) are differences of it.
double device_bytes_in_use(Device device);

}  // namespace lightring::launch
