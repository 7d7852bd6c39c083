// CPU backward of Lightning Attention-2, block form (docs/algorithm.md §2):
//
//     dS(i)  = λ^L dS(i+1) + c·(Λ Q_i)ᵀ dO_i                 (dS(nb) = G)
//     dQ_i   = c·( [(dO_i V_iᵀ) ⊙ M] K_i + Λ dO_i S(i)ᵀ )
//     dK_i   = c·[(dO_i V_iᵀ) ⊙ M]ᵀ Q_i + Γ V_i dS(i+1)ᵀ
//     dV_i   = c·[(Q_i K_iᵀ) ⊙ M]ᵀ dO_i + Γ K_i dS(i+1)
//
// Two sweeps per (batch, head), so that no per-block state is stored: a
// forward sweep recomputes S(i) and produces dQ; a reverse sweep carries
// dS(i+1) and produces dK, dV and finally dS0 = dS(0).
//
// Packed documents run in the same sweeps (docs/algorithm.md §5.3; plan_blocks): the dQ sweep
// restarts S at a document's first block from its initial state; the reverse sweep restarts dS
// at a document's last block from the gradient of its final state, and writes dS after its first
// block as the gradient of its initial state. dS0 of the shard is 0 when its first row starts a
// document (S_in is not read).
#include <algorithm>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/blocks.h"

namespace lightring::kernels::cpu {

namespace {

// dQ, with S(i) recomputed left to right from S0.
template <typename T>
void backward_dq_head(const BackwardParams& p, int64_t b, int64_t h, const std::vector<float>& pw) {
  const int64_t D = p.qk_dim, E = p.v_dim;
  const int Bk = p.block_size;
  std::vector<float> k(Bk * D), v(Bk * E), vt(E * Bk), dout(Bk * E), dq(Bk * D), dP(Bk * Bk);
  std::vector<float> S(D * E, 0.0f), St(E * D), lam_row(Bk), gamma(Bk);
  if (p.initial_state) {
    const float* s0 = p.initial_state + state_offset(p, b, h);
    std::copy(s0, s0 + D * E, S.begin());
  }
  for (const Block& blk : plan_blocks(p)) {
    const int64_t t0 = blk.t0;
    const int L = blk.len;
    if (blk.start_doc >= 0) load_doc_state(p, p.doc_initial_states, blk.start_doc, h, &S);
    load_rows<T>(p.k, p.k_stride, b, h, t0, L, D, k.data());
    load_rows<T>(p.v, p.v_stride, b, h, t0, L, E, v.data());
    load_rows<T>(p.d_o, p.do_stride, b, h, t0, L, E, dout.data());
    transpose(v.data(), L, E, vt.data());

    masked_scores(dout.data(), vt.data(), L, E, pw.data(), dP.data());
    std::fill(dq.begin(), dq.begin() + L * D, 0.0f);
    for (int r = 0; r < L; ++r) {
      float* dqr = dq.data() + r * D;
      for (int c = 0; c <= r; ++c) {
        const float w = dP[r * L + c];
        const float* kc = k.data() + c * D;
        for (int64_t d = 0; d < D; ++d) dqr[d] += w * kc[d];
      }
    }
    for (int r = 0; r < L; ++r) lam_row[r] = pw[r + 1];
    transpose(S.data(), D, E, St.data());
    rows_times_matrix(dout.data(), lam_row.data(), St.data(), L, E, D, dq.data());
    if (p.scale != 1.0f)
      for (int64_t i = 0; i < L * D; ++i) dq[i] *= p.scale;
    store_rows<T>(dq.data(), L, D, p.dq, p.dq_stride, b, h, t0);

    for (int c = 0; c < L; ++c) gamma[c] = pw[L - 1 - c];
    accumulate_outer(pw[L], gamma.data(), k.data(), v.data(), L, D, E, S.data());
  }
}

// dK, dV and dS0, with dS(i+1) carried right to left from G.
template <typename T>
void backward_dkdv_head(const BackwardParams& p, int64_t b, int64_t h,
                        const std::vector<float>& pw) {
  const int64_t D = p.qk_dim, E = p.v_dim;
  const int Bk = p.block_size;
  std::vector<float> q(Bk * D), k(Bk * D), kt(D * Bk), v(Bk * E), vt(E * Bk), dout(Bk * E);
  std::vector<float> dk(Bk * D), dv(Bk * E), P(Bk * Bk), dP(Bk * Bk);
  std::vector<float> dS(D * E, 0.0f), dSt(E * D), gamma(Bk), w(Bk);
  if (p.d_final_state) {
    const float* g = p.d_final_state + state_offset(p, b, h);
    std::copy(g, g + D * E, dS.begin());
  }
  const std::vector<Block> blocks = plan_blocks(p);
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    const Block& blk = *it;
    const int64_t t0 = blk.t0;
    const int L = blk.len;
    if (blk.end_doc >= 0) load_doc_state(p, p.d_doc_final_states, blk.end_doc, h, &dS);
    load_rows<T>(p.q, p.q_stride, b, h, t0, L, D, q.data());
    load_rows<T>(p.k, p.k_stride, b, h, t0, L, D, k.data());
    load_rows<T>(p.v, p.v_stride, b, h, t0, L, E, v.data());
    load_rows<T>(p.d_o, p.do_stride, b, h, t0, L, E, dout.data());
    transpose(k.data(), L, D, kt.data());
    transpose(v.data(), L, E, vt.data());
    masked_scores(q.data(), kt.data(), L, D, pw.data(), P.data());
    masked_scores(dout.data(), vt.data(), L, E, pw.data(), dP.data());

    // Intra: dV_c = c·Σ_{r≥c} P[r][c] dO_r,  dK_c = c·Σ_{r≥c} dP[r][c] q_r.
    std::fill(dv.begin(), dv.begin() + L * E, 0.0f);
    std::fill(dk.begin(), dk.begin() + L * D, 0.0f);
    for (int c = 0; c < L; ++c) {
      float* dvc = dv.data() + c * E;
      float* dkc = dk.data() + c * D;
      for (int r = c; r < L; ++r) {
        const float wp = p.scale * P[r * L + c];
        const float wd = p.scale * dP[r * L + c];
        const float* dor = dout.data() + r * E;
        const float* qr = q.data() + r * D;
        for (int64_t e = 0; e < E; ++e) dvc[e] += wp * dor[e];
        for (int64_t d = 0; d < D; ++d) dkc[d] += wd * qr[d];
      }
    }
    // Inter: dV += Γ K dS(i+1),  dK += Γ V dS(i+1)ᵀ, with Γ_c = λ^{L-1-c}.
    for (int c = 0; c < L; ++c) gamma[c] = pw[L - 1 - c];
    rows_times_matrix(k.data(), gamma.data(), dS.data(), L, D, E, dv.data());
    transpose(dS.data(), D, E, dSt.data());
    rows_times_matrix(v.data(), gamma.data(), dSt.data(), L, E, D, dk.data());
    store_rows<T>(dv.data(), L, E, p.dv, p.dv_stride, b, h, t0);
    store_rows<T>(dk.data(), L, D, p.dk, p.dk_stride, b, h, t0);

    // dS(i) = λ^L dS(i+1) + c·Σ_r λ^{r+1} q_rᵀ dO_r.
    for (int r = 0; r < L; ++r) w[r] = p.scale * pw[r + 1];
    accumulate_outer(pw[L], w.data(), q.data(), dout.data(), L, D, E, dS.data());
    if (blk.start_doc >= 0 && p.d_doc_initial_states)
      std::copy(dS.begin(), dS.end(),
                p.d_doc_initial_states + doc_state_offset(p, blk.start_doc, h));
  }
  if (p.docs.enabled() && !p.docs.continues) std::fill(dS.begin(), dS.end(), 0.0f);
  if (p.d_initial_state) std::copy(dS.begin(), dS.end(), p.d_initial_state + state_offset(p, b, h));
}

}  // namespace

void backward(const BackwardParams& p) {
  dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = num_heads_total(p);
    // Two independent tasks per (b, h): the dQ sweep and the dK/dV sweep.
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < 2 * total; ++task) {
      const int64_t bh = task / 2;
      const int64_t b = bh / p.heads, h = bh % p.heads;
      const std::vector<float> pw = decay_powers(p.decay, h, p.block_size);
      if (task % 2 == 0) {
        backward_dq_head<T>(p, b, h, pw);
      } else {
        backward_dkdv_head<T>(p, b, h, pw);
      }
    }
  });
}

}  // namespace lightring::kernels::cpu
