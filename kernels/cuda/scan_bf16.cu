// The scan kernels for bf16 inputs (instantiated here so that the element types build in parallel).
#include "kernels/cuda/scan_kernel.cuh"

namespace lightring::kernels::cuda {

void scan_bf16(const ScanParams& p, cudaStream_t stream) {
  scan_detail::launch_dims<__nv_bfloat16, 64>(p, stream);
}

}  // namespace lightring::kernels::cuda
