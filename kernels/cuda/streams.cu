// Side streams for independent sub-problems (kernels/backend.h: cuda::fork_streams): the
// document pieces of a shard (kernels/documents.cpp) are independent problems, each too small
// to fill the GPU on its own, so they run concurrently on side streams forked from the
// caller's stream and joined back into it.
//
// Ownership: per host thread and device, kMaxSideStreams non-blocking streams and their events,
// created on first use and kept for the life of the process (a stream pool, like torch's).
// Ordering: fork records one event on `stream` that every side stream waits for; join records
// one event per side stream that `stream` waits for. Everything enqueued on `stream` before
// the fork happens before the side work, everything after the join happens after it.
#include <cuda_runtime.h>

#include <array>
#include <map>

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/backend.h"

namespace lightring::kernels::cuda {

namespace {

struct SidePool {
  std::array<cudaStream_t, kMaxSideStreams> streams{};
  std::array<cudaEvent_t, kMaxSideStreams> done{};
  cudaEvent_t forked = nullptr;
};

SidePool& pool() {
  thread_local std::map<int, SidePool> pools;
  int device = 0;
  LR_CUDA_CHECK(cudaGetDevice(&device));
  SidePool& p = pools[device];
  if (!p.forked) {
    for (int i = 0; i < kMaxSideStreams; ++i) {
      LR_CUDA_CHECK(cudaStreamCreateWithFlags(&p.streams[i], cudaStreamNonBlocking));
      LR_CUDA_CHECK(cudaEventCreateWithFlags(&p.done[i], cudaEventDisableTiming));
    }
    LR_CUDA_CHECK(cudaEventCreateWithFlags(&p.forked, cudaEventDisableTiming));
  }
  return p;
}

}  // namespace

void fork_streams(void* stream, int n, void** side) {
  LR_CHECK(n >= 1 && n <= kMaxSideStreams, "fork_streams: n must be in [1, ", kMaxSideStreams,
           "] (got ", n, ")");
  SidePool& p = pool();
  const auto s = static_cast<cudaStream_t>(stream);
  LR_CUDA_CHECK(cudaEventRecord(p.forked, s));
  for (int i = 0; i < n; ++i) {
    LR_CUDA_CHECK(cudaStreamWaitEvent(p.streams[i], p.forked, 0));
    side[i] = p.streams[i];
  }
}

void join_streams(void* stream, int n) {
  SidePool& p = pool();
  const auto s = static_cast<cudaStream_t>(stream);
  for (int i = 0; i < n; ++i) {
    LR_CUDA_CHECK(cudaEventRecord(p.done[i], p.streams[i]));
    LR_CUDA_CHECK(cudaStreamWaitEvent(s, p.done[i], 0));
  }
}

}  // namespace lightring::kernels::cuda
