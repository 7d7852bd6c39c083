// CUDA backend entry points. Placeholder until the kernels land: every entry
// point reports that the CUDA kernels are not implemented yet.
#include <cuda_runtime.h>

#include "kernels/backend.h"
#include "kernels/error.h"

namespace lightring::kernels::cuda {

bool available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

int default_block_size(int64_t, int64_t) {
  return 64;
}

void forward(const ForwardParams&) {
  LR_THROW("the CUDA forward kernel is not implemented yet");
}
void backward(const BackwardParams&) {
  LR_THROW("the CUDA backward kernel is not implemented yet");
}
void local_state(const StateParams&) {
  LR_THROW("the CUDA local_state kernel is not implemented yet");
}

}  // namespace lightring::kernels::cuda
