// CPU forward of Lightning Attention-2, block form (docs/algorithm.md §2):
//
//     O_i    = c·( [(Q_i K_iᵀ) ⊙ M] V_i  +  (Λ Q_i) S(i) )
//     S(i+1) = λ^L S(i) + (Γ K_i)ᵀ V_i
//
// Packed documents run in the same loop (docs/algorithm.md §5.3): blocks never cross a boundary
// (plan_blocks), S restarts from the document's initial state at a block that starts one and
// is written as its final state after a block that ends one.
//
// One (batch, head) pair per OpenMP task; fp32 accumulation, fp32 state.
#include <algorithm>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/blocks.h"

namespace lightring::kernels::cpu {

namespace {

template <typename T>
void forward_head(const ForwardParams& p, int64_t b, int64_t h) {
  const int64_t D = p.qk_dim, E = p.v_dim;
  const int Bk = p.block_size;
  const std::vector<float> pw = decay_powers(p.decay, h, Bk);

  std::vector<float> q(Bk * D), k(Bk * D), kt(D * Bk), v(Bk * E), o(Bk * E), P(Bk * Bk);
  std::vector<float> S(D * E, 0.0f), lam_row(Bk), gamma(Bk);
  if (p.initial_state) {
    const float* s0 = p.initial_state + state_offset(p, b, h);
    std::copy(s0, s0 + D * E, S.begin());
  }

  for (const Block& blk : plan_blocks(p)) {
    const int64_t t0 = blk.t0;
    const int L = blk.len;
    if (blk.start_doc >= 0) load_doc_state(p, p.doc_initial_states, blk.start_doc, h, &S);
    load_rows<T>(p.q, p.q_stride, b, h, t0, L, D, q.data());
    load_rows<T>(p.k, p.k_stride, b, h, t0, L, D, k.data());
    load_rows<T>(p.v, p.v_stride, b, h, t0, L, E, v.data());
    transpose(k.data(), L, D, kt.data());

    // Intra: O = [(Q Kᵀ) ⊙ M] V.
    masked_scores(q.data(), kt.data(), L, D, pw.data(), P.data());
    std::fill(o.begin(), o.begin() + L * E, 0.0f);
    for (int r = 0; r < L; ++r) {
      float* orow = o.data() + r * E;
      for (int c = 0; c <= r; ++c) {
        const float w = P[r * L + c];
        const float* vc = v.data() + c * E;
        for (int64_t e = 0; e < E; ++e) orow[e] += w * vc[e];
      }
    }
    // Inter: O += (Λ Q) S with Λ_r = λ^{r+1}.
    for (int r = 0; r < L; ++r) lam_row[r] = pw[r + 1];
    rows_times_matrix(q.data(), lam_row.data(), S.data(), L, D, E, o.data());
    if (p.scale != 1.0f)
      for (int64_t i = 0; i < L * E; ++i) o[i] *= p.scale;
    store_rows<T>(o.data(), L, E, p.o, p.o_stride, b, h, t0);

    // State: S = λ^L S + Σ_c λ^{L-1-c} k_cᵀ v_c.
    for (int c = 0; c < L; ++c) gamma[c] = pw[L - 1 - c];
    accumulate_outer(pw[L], gamma.data(), k.data(), v.data(), L, D, E, S.data());
    if (blk.end_doc >= 0 && p.doc_final_states)
      std::copy(S.begin(), S.end(), p.doc_final_states + doc_state_offset(p, blk.end_doc, h));
  }

  if (p.final_state) std::copy(S.begin(), S.end(), p.final_state + state_offset(p, b, h));
}

}  // namespace

void forward(const ForwardParams& p) {
  dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = num_heads_total(p);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < total; ++bh) forward_head<T>(p, bh / p.heads, bh % p.heads);
  });
}

}  // namespace lightring::kernels::cpu
