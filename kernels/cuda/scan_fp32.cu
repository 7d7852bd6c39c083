// The scan kernels for fp32 inputs (instantiated here so that the element types build in parallel).
#include "kernels/cuda/scan_kernel.cuh"

namespace lightring::kernels::cuda {

void scan_fp32(const ScanParams& p, cudaStream_t stream) {
  scan_detail::launch_dims<float, 32>(p, stream);
}

}  // namespace lightring::kernels::cuda
