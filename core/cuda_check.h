// CUDA runtime error checking: every runtime call and every launch goes through
// LR_CUDA_CHECK / LR_CUDA_CHECK_LAUNCH, which throw lightring::Error with the
// call, the cudaGetErrorString text and the source location.
//
// Header-only: a target that includes it links CUDA::cudart itself; core/ has
// no CUDA dependency of its own.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

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
