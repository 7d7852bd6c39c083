// CUDA error checking for the CUDA backend: every runtime call and every
// launch goes through LR_CUDA_CHECK, which throws lightring::Error with the
// call, the cudaGetErrorString text and the source location.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "kernels/error.h"

#define LR_CUDA_CHECK(call)                                                                \
  do {                                                                                     \
    const cudaError_t lr_cuda_err_ = (call);                                               \
    LR_CHECK(lr_cuda_err_ == cudaSuccess, "CUDA call failed: ", #call, ": ",               \
             cudaGetErrorString(lr_cuda_err_), " (", cudaGetErrorName(lr_cuda_err_), ")"); \
  } while (0)

// After a kernel launch: launch-configuration errors and sticky errors of earlier work.
#define LR_CUDA_CHECK_LAUNCH(what)                                                                \
  do {                                                                                            \
    const cudaError_t lr_cuda_err_ = cudaGetLastError();                                          \
    LR_CHECK(lr_cuda_err_ == cudaSuccess, "CUDA launch of ", what,                                \
             " failed: ", cudaGetErrorString(lr_cuda_err_), " (", cudaGetErrorName(lr_cuda_err_), \
             ")");                                                                                \
  } while (0)

namespace lightring::kernels::cuda {

// An on/off switch of the CUDA backend read from the environment: unset, empty or "1" is on,
// "0" off; anything else throws, naming the variable.
inline bool env_switch(const char* name) {
  const char* env = std::getenv(name);
  if (!env || !*env || std::strcmp(env, "1") == 0) return true;
  LR_CHECK(std::strcmp(env, "0") == 0, name, " must be unset, '0' or '1' (got '", env, "')");
  return false;
}

}  // namespace lightring::kernels::cuda
