// Backend entry points behind kernels/attention.h. Callers use attention.h;
// these receive params that validate() has already accepted, with block_size
// resolved (never 0).
#pragma once

#include "kernels/attention.h"

namespace lightring::kernels {

// Throws lightring::Error naming the first bad field.
void validate(const ForwardParams& p);
void validate(const BackwardParams& p);
void validate(const StateParams& p);

namespace cpu {
void forward(const ForwardParams& p);
void backward(const BackwardParams& p);
void local_state(const StateParams& p);
constexpr int kDefaultBlockSize = 64;
}  // namespace cpu

namespace cuda {
// Defined in kernels/cuda/ when LIGHTRING_WITH_CUDA; otherwise never called.
void forward(const ForwardParams& p);
void backward(const BackwardParams& p);
void local_state(const StateParams& p);
int default_block_size(int64_t qk_dim, int64_t v_dim);
bool available();
}  // namespace cuda

}  // namespace lightring::kernels
