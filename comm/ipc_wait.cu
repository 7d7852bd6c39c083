// The IPC transport's wait kernel (see ipc_wait.h).
#include <cuda_runtime.h>

#include "comm/ipc_wait.h"
#include "core/cuda_check.h"

namespace lightring::comm {

namespace {

__global__ void ipc_wait_kernel(const volatile uint32_t* word, uint32_t value,
                                const volatile int* abort) {
  while (static_cast<int32_t>(*word - value) < 0) {
    if (*abort) return;
#if __CUDA_ARCH__ >= 700
    __nanosleep(200);
#endif
  }
}

}  // namespace

void ipc_wait(const uint32_t* word, uint32_t value, const int* abort, CUstream_st* stream) {
  ipc_wait_kernel<<<1, 1, 0, reinterpret_cast<cudaStream_t>(stream)>>>(word, value, abort);
  LR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace lightring::comm
