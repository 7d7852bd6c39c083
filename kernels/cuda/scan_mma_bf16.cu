// The mma family (family.h, scan_mma.cuh) for bf16 inputs, instantiated in its own file
// (parallel builds).
#include "kernels/cuda/scan_mma.cuh"

namespace lightring::kernels::cuda {

void scan_mma_bf16(const ScanParams& p, cudaStream_t stream) {
  scan_mma::run<__nv_bfloat16>(p, stream);
}

}  // namespace lightring::kernels::cuda
