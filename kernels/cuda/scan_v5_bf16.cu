// The v5 scan kernels (variant.h, scan_v5.cuh) for bf16 inputs, instantiated in their own file
// (parallel builds).
#include "kernels/cuda/scan_v5.cuh"

namespace lightring::kernels::cuda {

void scan_v5_bf16(const ScanParams& p, cudaStream_t stream) {
  v5::run<__nv_bfloat16>(p, stream);
}

}  // namespace lightring::kernels::cuda
