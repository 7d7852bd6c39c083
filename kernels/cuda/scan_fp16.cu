// The scan kernels for fp16 inputs (instantiated here so that the element types build in parallel).
#include "kernels/cuda/scan_kernel.cuh"

namespace lightring::kernels::cuda {

void scan_fp16(const ScanParams& p, cudaStream_t stream) {
  scan_detail::launch_dims<__half, 64>(p, stream);
}

}  // namespace lightring::kernels::cuda
