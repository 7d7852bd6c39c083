// CPU local state pairs of a segment (docs/algorithm.md §3), from a zero state:
//
//     kForward:  A = Σ_t λ^{N-1-t} k_tᵀ v_t     blocks left to right:  A = λ^L A + (Γ K_i)ᵀ V_i
//     kBackward: C = Σ_t c·λ^{t+1} q_tᵀ dO_t   blocks right to left:  C = λ^L C + c·(Λ Q_i)ᵀ dO_i
#include <algorithm>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/blocks.h"

namespace lightring::kernels::cpu {

namespace {

template <typename T>
void local_state_head(const StateParams& p, int64_t b, int64_t h) {
  const int64_t D = p.qk_dim, E = p.v_dim, N = p.seqlen;
  const int Bk = p.block_size;
  const std::vector<float> pw = decay_powers(p.decay, h, Bk);
  std::vector<float> x(Bk * D), y(Bk * E), w(Bk), S(D * E, 0.0f);
  const int64_t num_blocks = (N + Bk - 1) / Bk;
  const bool fwd = p.kind == StateKind::kForward;

  for (int64_t i = 0; i < num_blocks; ++i) {
    const int64_t blk = fwd ? i : num_blocks - 1 - i;
    const int64_t t0 = blk * Bk;
    const int L = static_cast<int>(std::min<int64_t>(Bk, N - t0));
    load_rows<T>(p.x, p.x_stride, b, h, t0, L, D, x.data());
    load_rows<T>(p.y, p.y_stride, b, h, t0, L, E, y.data());
    for (int r = 0; r < L; ++r) w[r] = fwd ? pw[L - 1 - r] : p.scale * pw[r + 1];
    accumulate_outer(pw[L], w.data(), x.data(), y.data(), L, D, E, S.data());
  }
  std::copy(S.begin(), S.end(), p.state + state_offset(p, b, h));
}

}  // namespace

void local_state(const StateParams& p) {
  dispatch_dtype(p.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = num_heads_total(p);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < total; ++bh) local_state_head<T>(p, bh / p.heads, bh % p.heads);
  });
}

}  // namespace lightring::kernels::cpu
