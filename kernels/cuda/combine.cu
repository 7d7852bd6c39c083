// Segment combine of docs/algorithm.md §3, in place:
//
//     (a1, X1) ⊕ (a2, X2) = (a1·a2, a2·X1 + X2),   a_g = λ^{L_g}
//     ws[g] <- X_in(g) = init ⊕ (a_0, X_0) ⊕ … ⊕ (a_{g-1}, X_{g-1})   (X part)
//
// One thread per state element (bh, i, j) walks the G segments in order; the
// carry is fp32. Reads and writes ws once: O(B·H·G·dk·dv) bytes.
//
// seed_segments (segments.h) adds an entering state s0 that arrived after the
// combine ran from init = 0. The combine is linear in init, and init reaches
// segment g through the a's of the g segments before it, all seg_len rows long:
//
//     X_in(g)[s0] = X_in(g)[0] + λ^{g·seg_len}·s0,    X_in(G)[s0] = X_in(G)[0] + λ^N·s0
//
// One thread per state element again; the same O(B·H·G·dk·dv) bytes.
//
// axpy_decay is one combine of two pairs whose lengths the caller knows (the
// sequence-parallel exchange, parallel/exchange.cpp), X part only:
//
//     y <- λ_h^len·x + y,   λ_h^len = exp(−s_h·len)
//
// with λ_h^len computed in double and rounded to float, as kernels::segment_decay
// does on the host, so that both backends fold the same scalar.
#include <algorithm>

#include "core/cuda_check.h"
#include "kernels/cuda/scan.h"
#include "kernels/cuda/segments.h"

namespace lightring::kernels::cuda {

namespace {

__global__ void combine_kernel(float* ws, int num_segs, int64_t seg_len, int64_t seqlen,
                               int64_t heads, int64_t de, const float* decay, const float* init,
                               float* final_out, const DocSegment* segs) {
  const int64_t bh = blockIdx.y;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= de) return;
  const float s = decay ? decay[bh % heads] : 0.0f;
  float x = init ? init[bh * de + idx] : 0.0f;
  float* w = ws + bh * num_segs * de + idx;
  for (int g = 0; g < num_segs; ++g) {
    const int64_t len = segs ? segs[g].rows : min(seg_len, seqlen - g * seg_len);
    const float a = segs && segs[g].reset ? 0.0f : expf(-s * static_cast<float>(len));
    const float local = w[g * de];
    w[g * de] = x;
    x = a * x + local;
  }
  if (final_out) final_out[bh * de + idx] = x;
}

__global__ void seed_segments_kernel(float* ws, int num_segs, int64_t seg_len, int64_t seqlen,
                                     int64_t heads, int64_t de, const float* decay, const float* s0,
                                     const float* local_final, float* final_out,
                                     const DocSegment* segs) {
  const int64_t bh = blockIdx.y;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= de) return;
  const float s = decay ? decay[bh % heads] : 0.0f;
  const float x = s0[bh * de + idx];
  float* w = ws + bh * num_segs * de + idx;
  // With documents s0 reaches the segments up to the first one in which a document starts.
  int64_t offset = 0;
  bool reset = false;
  for (int g = 0; g < num_segs && !reset; ++g) {
    w[g * de] += expf(-s * static_cast<float>(offset)) * x;
    offset += segs ? segs[g].rows : seg_len;
    reset = segs && segs[g].reset;
  }
  if (final_out)
    final_out[bh * de + idx] =
        (reset ? 0.0f : expf(-s * static_cast<float>(seqlen)) * x) + local_final[bh * de + idx];
}

// Grid: x over the values of one head, y over b·heads + h.
__global__ void axpy_decay_kernel(float* __restrict__ y, const float* __restrict__ x,
                                  const float* __restrict__ decay, int64_t heads, int64_t per_head,
                                  int64_t len) {
  const int64_t bh = blockIdx.y, h = bh % heads;
  const float a =
      decay ? static_cast<float>(exp(-static_cast<double>(decay[h]) * static_cast<double>(len)))
            : 1.0f;
  const int64_t base = bh * per_head;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < per_head;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[base + i] = a * x[base + i] + y[base + i];
  }
}

}  // namespace

void seed_segments(float* ws, const Problem& p, const SegmentPlan& plan, const float* s0,
                   const float* local_final, float* final_out, cudaStream_t stream,
                   const DocSegment* segs) {
  const int64_t bh = p.batch * p.heads, de = p.qk_dim * p.v_dim;
  if (!s0) {  // X_in(g) are already the entering states; the final state is the local pair
    if (final_out)
      LR_CUDA_CHECK(cudaMemcpyAsync(final_out, local_final, bh * de * sizeof(float),
                                    cudaMemcpyDeviceToDevice, stream));
    return;
  }
  constexpr int kThreads = 256;
  LR_CHECK(bh <= 65535, "CUDA seed_segments: batch*heads must be <= 65535 (got ", bh, ")");
  const dim3 grid(static_cast<unsigned>((de + kThreads - 1) / kThreads), static_cast<unsigned>(bh));
  seed_segments_kernel<<<grid, kThreads, 0, stream>>>(ws, plan.num_segs, plan.seg_len, p.seqlen,
                                                      p.heads, de, p.decay, s0, local_final,
                                                      final_out, segs);
  LR_CUDA_CHECK_LAUNCH("seed_segments_kernel");
}

void combine(float* ws, int64_t bh, int num_segs, int64_t seg_len, int64_t seqlen, int64_t heads,
             int dk, int dv, const float* decay, const float* init, float* final_out, void* stream,
             const DocSegment* segs) {
  const int64_t de = static_cast<int64_t>(dk) * dv;
  constexpr int kThreads = 256;
  LR_CHECK(bh <= 65535, "CUDA combine: batch*heads must be <= 65535 (got ", bh, ")");
  const dim3 grid(static_cast<unsigned>((de + kThreads - 1) / kThreads), static_cast<unsigned>(bh));
  combine_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      ws, num_segs, seg_len, seqlen, heads, de, decay, init, final_out, segs);
  LR_CUDA_CHECK_LAUNCH("combine_kernel");
}

void axpy_decay(float* y, const float* x, const float* decay, int64_t batch, int64_t heads,
                int64_t per_head, int64_t len, void* stream) {
  if (batch == 0 || heads == 0 || per_head == 0) return;
  constexpr int kThreads = 256;
  const int64_t bh = batch * heads;
  LR_CHECK(bh <= 65535, "CUDA axpy_decay: batch*heads must be <= 65535 (got ", bh, ")");
  const dim3 grid(
      static_cast<unsigned>(std::min<int64_t>((per_head + kThreads - 1) / kThreads, 64)),
      static_cast<unsigned>(bh));
  axpy_decay_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(y, x, decay, heads,
                                                                              per_head, len);
  LR_CUDA_CHECK_LAUNCH("axpy_decay_kernel");
}

}  // namespace lightring::kernels::cuda
