// Streams, events, memory probe and copy ceiling of lightring-bench.
#include "launch/bench_device.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#ifdef LIGHTRING_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#endif

#include "core/error.h"
#include "launch/bench_shard.h"

namespace lightring::launch {

ComputeStream::ComputeStream(Device device) : device_(device) {
#ifdef LIGHTRING_WITH_CUDA
  if (device == Device::kCuda) {
    cudaStream_t s;
    LR_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    stream_ = s;
  }
#endif
}

ComputeStream::~ComputeStream() {
#ifdef LIGHTRING_WITH_CUDA
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
#endif
}

void ComputeStream::synchronize() const {
#ifdef LIGHTRING_WITH_CUDA
  if (device_ == Device::kCuda)
    LR_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
#endif
}

EventPair::EventPair(Device device) {
#ifdef LIGHTRING_WITH_CUDA
  if (device == Device::kCuda) {
    cudaEvent_t a, b;
    LR_CUDA_CHECK(cudaEventCreate(&a));
    LR_CUDA_CHECK(cudaEventCreate(&b));
    begin_ = a;
    end_ = b;
  }
#endif
  (void)device;
}

EventPair::~EventPair() {
#ifdef LIGHTRING_WITH_CUDA
  if (begin_) cudaEventDestroy(static_cast<cudaEvent_t>(begin_));
  if (end_) cudaEventDestroy(static_cast<cudaEvent_t>(end_));
#endif
}

double EventPair::elapsed_ms() const {
#ifdef LIGHTRING_WITH_CUDA
  if (!begin_) return 0.0;
  LR_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end_)));
  float ms = 0;
  LR_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(begin_), static_cast<cudaEvent_t>(end_)));
  return ms;
#else
  return 0.0;
#endif
}

namespace {

double vm_hwm_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return 1024.0 * std::atof(line.c_str() + 6);  // kB
  return 0.0;
}

#ifdef LIGHTRING_WITH_CUDA
cudaMemPool_t default_pool() {
  int dev = 0;
  LR_CUDA_CHECK(cudaGetDevice(&dev));
  cudaMemPool_t pool;
  LR_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
  return pool;
}
#endif

}  // namespace

void MemoryProbe::begin_row() {
  reset_tracked_peak();
#ifdef LIGHTRING_WITH_CUDA
  if (device_ == Device::kCuda) {
    LR_CUDA_CHECK(cudaDeviceSynchronize());
    cudaMemPool_t pool = default_pool();
    LR_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
    uint64_t zero = 0;
    LR_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
    in_use_before_ = device_bytes_in_use(device_) - static_cast<double>(tracked_bytes());
    return;
  }
#endif
  std::ofstream clear("/proc/self/clear_refs");
  if (clear) clear << "5";  // resets VmHWM to the current resident set (Linux >= 4.0)
}

double MemoryProbe::alloc_peak_bytes() const {
  double peak = static_cast<double>(tracked_peak_bytes());
#ifdef LIGHTRING_WITH_CUDA
  if (device_ == Device::kCuda) {
    uint64_t high = 0;
    LR_CUDA_CHECK(cudaMemPoolGetAttribute(default_pool(), cudaMemPoolAttrUsedMemHigh, &high));
    peak += static_cast<double>(high);
  }
#endif
  return peak;
}

double MemoryProbe::peak_bytes() const {
  if (device_ == Device::kCuda) return in_use_before_ + alloc_peak_bytes();
  return vm_hwm_bytes();
}

double device_bytes_in_use(Device device) {
#ifdef LIGHTRING_WITH_CUDA
  if (device == Device::kCuda) {
    size_t free_b = 0, total_b = 0;
    LR_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return static_cast<double>(total_b - free_b);
  }
#endif
  (void)device;
  return 0.0;
}

double copy_bandwidth_GBps(Device device, size_t bytes) {
  using Clock = std::chrono::steady_clock;
  double best = 0.0;
#ifdef LIGHTRING_WITH_CUDA
  if (device == Device::kCuda) {
    Buffer src(device, bytes), dst(device, bytes);
    cudaEvent_t a, b;
    LR_CUDA_CHECK(cudaEventCreate(&a));
    LR_CUDA_CHECK(cudaEventCreate(&b));
    for (int it = 0; it < 6; ++it) {
      LR_CUDA_CHECK(cudaEventRecord(a, nullptr));
      LR_CUDA_CHECK(
          cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, nullptr));
      LR_CUDA_CHECK(cudaEventRecord(b, nullptr));
      LR_CUDA_CHECK(cudaEventSynchronize(b));
      float ms = 0;
      LR_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
      if (it > 0 && ms > 0) best = std::max(best, 2.0 * bytes / (ms * 1e-3) / 1e9);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return best;
  }
#endif
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  for (int it = 0; it < 4; ++it) {
    const auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (it > 0 && s > 0) best = std::max(best, 2.0 * bytes / s / 1e9);
    volatile char sink = dst[bytes / 2];  // keep the copy observable
    (void)sink;
  }
  return best;
}

}  // namespace lightring::launch
