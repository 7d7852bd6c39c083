// The v6 scan kernels (variant.h, scan_v6.cuh) for fp16 inputs, instantiated in their own file
// (parallel builds).
#include "kernels/cuda/scan_v6.cuh"

namespace lightring::kernels::cuda {

void scan_v6_fp16(const ScanParams& p, cudaStream_t stream) {
  v6::run<__half>(p, stream);
}

}  // namespace lightring::kernels::cuda
