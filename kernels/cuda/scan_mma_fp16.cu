// The mma family (family.h, scan_mma.cuh) for fp16 inputs, instantiated in its own file
// (parallel builds).
#include "kernels/cuda/scan_mma.cuh"

namespace lightring::kernels::cuda {

void scan_mma_fp16(const ScanParams& p, cudaStream_t stream) {
  scan_mma::run<__half>(p, stream);
}

}  // namespace lightring::kernels::cuda
