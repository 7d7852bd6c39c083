// The v4 scan kernels (variant.h) for bf16 inputs, instantiated in their own file (parallel
// builds).
#include "kernels/cuda/scan_v4.cuh"

namespace lightring::kernels::cuda {

void scan_v4_bf16(const ScanParams& p, cudaStream_t stream) {
  scan_detail::launch_v4<__nv_bfloat16>(p, stream);
}

}  // namespace lightring::kernels::cuda
