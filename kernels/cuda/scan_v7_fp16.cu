// The v7 scan kernels (variant.h, scan_v7.cuh) for fp16 inputs, instantiated in its own file
// (parallel builds).
#include "kernels/cuda/scan_v7_launch.cuh"

namespace lightring::kernels::cuda {

bool scan_v7_fp16(const ScanParams& p, cudaStream_t stream) {
  return v7::run<__half>(p, stream);
}

}  // namespace lightring::kernels::cuda
