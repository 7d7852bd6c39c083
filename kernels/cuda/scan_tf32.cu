// The tf32 family (scan_tf32.cuh) instantiated for fp32 inputs.
#include "kernels/cuda/scan_tf32.cuh"

namespace lightring::kernels::cuda {

void scan_fp32(const ScanParams& p, cudaStream_t stream) {
  scan_tf32::launch_dims<float, 32>(p, stream);
}

}  // namespace lightring::kernels::cuda
