// The wgmma family (family.h, scan_wgmma.cuh) for fp16 inputs, instantiated in its own file
// (parallel builds).
#include "kernels/cuda/scan_wgmma_launch.cuh"

namespace lightring::kernels::cuda {

bool scan_wgmma_fp16(const ScanParams& p, cudaStream_t stream) {
  return scan_wgmma::run<__half>(p, stream);
}

}  // namespace lightring::kernels::cuda
