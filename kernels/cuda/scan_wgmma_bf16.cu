// The wgmma family (family.h, scan_wgmma.cuh) for bf16 inputs, instantiated in its own file
// (parallel builds).
#include "kernels/cuda/scan_wgmma_launch.cuh"

namespace lightring::kernels::cuda {

bool scan_wgmma_bf16(const ScanParams& p, cudaStream_t stream) {
  return scan_wgmma::run<__nv_bfloat16>(p, stream);
}

}  // namespace lightring::kernels::cuda
