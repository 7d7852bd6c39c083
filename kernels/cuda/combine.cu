// Segment combine of docs/algorithm.md §3, in place:
//
//     (a1, X1) ⊕ (a2, X2) = (a1·a2, a2·X1 + X2),   a_g = λ^{L_g}
//     ws[g] <- X_in(g) = init ⊕ (a_0, X_0) ⊕ … ⊕ (a_{g-1}, X_{g-1})   (X part)
//
// One thread per state element (bh, i, j) walks the G segments in order; the
// carry is fp32. Reads and writes ws once: O(B·H·G·dk·dv) bytes.
#include "kernels/cuda/check.h"
#include "kernels/cuda/scan.h"

namespace lightring::kernels::cuda {

namespace {

__global__ void combine_kernel(float* ws, int num_segs, int64_t seg_len, int64_t seqlen,
                               int64_t heads, int64_t de, const float* decay, const float* init,
                               float* final_out) {
  const int64_t bh = blockIdx.y;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= de) return;
  const float s = decay ? decay[bh % heads] : 0.0f;
  float x = init ? init[bh * de + idx] : 0.0f;
  float* w = ws + bh * num_segs * de + idx;
  for (int g = 0; g < num_segs; ++g) {
    const int64_t len = min(seg_len, seqlen - g * seg_len);
    const float local = w[g * de];
    w[g * de] = x;
    x = expf(-s * static_cast<float>(len)) * x + local;
  }
  if (final_out) final_out[bh * de + idx] = x;
}

}  // namespace

void combine(float* ws, int64_t bh, int num_segs, int64_t seg_len, int64_t seqlen, int64_t heads,
             int dk, int dv, const float* decay, const float* init, float* final_out,
             void* stream) {
  const int64_t de = static_cast<int64_t>(dk) * dv;
  constexpr int kThreads = 256;
  LR_CHECK(bh <= 65535, "CUDA combine: batch*heads must be <= 65535 (got ", bh, ")");
  const dim3 grid(static_cast<unsigned>((de + kThreads - 1) / kThreads), static_cast<unsigned>(bh));
  combine_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      ws, num_segs, seg_len, seqlen, heads, de, decay, init, final_out);
  LR_CUDA_CHECK_LAUNCH("combine_kernel");
}

}  // namespace lightring::kernels::cuda
