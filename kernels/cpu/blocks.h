// Shared pieces of the CPU backend: block loads and stores, the decay table,
// and the small dense products of the block form (docs/algorithm.md §2).
//
// All buffers are fp32 row-major. A block has L <= B rows; "rows" index the
// sequence within the block, r = 0..L-1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu/element.h"

namespace lightring::kernels::cpu {

// pw[i] = λ^i for i = 0..B (only bounded, non-negative exponents: never λ^{-t}).
inline std::vector<float> decay_powers(const float* decay, int64_t head, int block) {
  std::vector<float> pw(block + 1);
  const double s = decay ? static_cast<double>(decay[head]) : 0.0;
  for (int i = 0; i <= block; ++i) pw[i] = static_cast<float>(std::exp(-s * i));
  return pw;
}

// Element offset of row t of head (b, h).
inline int64_t row_offset(const Strides& st, int64_t b, int64_t h, int64_t t) {
  return b * st.batch + h * st.head + t * st.seq;
}

// dst[r*dim + j] = src[row r of the block starting at t0], r < L.
template <typename T>
void load_rows(const void* src, const Strides& st, int64_t b, int64_t h, int64_t t0, int L,
               int64_t dim, float* dst) {
  const T* base = static_cast<const T*>(src);
  for (int r = 0; r < L; ++r) {
    const T* row = base + row_offset(st, b, h, t0 + r);
    float* out = dst + r * dim;
    for (int64_t j = 0; j < dim; ++j) out[j] = to_float(row[j]);
  }
}

template <typename T>
void store_rows(const float* src, int L, int64_t dim, void* dst, const Strides& st, int64_t b,
                int64_t h, int64_t t0) {
  T* base = static_cast<T*>(dst);
  for (int r = 0; r < L; ++r) {
    T* row = base + row_offset(st, b, h, t0 + r);
    const float* in = src + r * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] = from_float<T>(in[j]);
  }
}

// out (cols×rows) = in (rows×cols)ᵀ.
inline void transpose(const float* in, int64_t rows, int64_t cols, float* out) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out[j * rows + i] = in[i * cols + j];
}

// P[r][c] = (a_r · b_c)·λ^{r-c} for c <= r, 0 above the diagonal: [(A Bᵀ) ⊙ M].
// a is L×dim, bt is dim×L (b transposed).
inline void masked_scores(const float* a, const float* bt, int L, int64_t dim, const float* pw,
                          float* P) {
  for (int r = 0; r < L; ++r) {
    float* pr = P + r * L;
    for (int c = 0; c < L; ++c) pr[c] = 0.0f;
    const float* ar = a + r * dim;
    for (int64_t j = 0; j < dim; ++j) {
      const float aj = ar[j];
      const float* bj = bt + j * L;
      for (int c = 0; c <= r; ++c) pr[c] += aj * bj[c];
    }
    for (int c = 0; c <= r; ++c) pr[c] *= pw[r - c];
  }
}

// S (dim_x×dim_y) = decay_all·S + Σ_r w[r]·x_rᵀ y_r over the L rows of the block.
inline void accumulate_outer(float decay_all, const float* w, const float* x, const float* y, int L,
                             int64_t dim_x, int64_t dim_y, float* S) {
  if (decay_all != 1.0f)
    for (int64_t i = 0; i < dim_x * dim_y; ++i) S[i] *= decay_all;
  for (int r = 0; r < L; ++r) {
    const float* xr = x + r * dim_x;
    const float* yr = y + r * dim_y;
    for (int64_t i = 0; i < dim_x; ++i) {
      const float coef = w[r] * xr[i];
      float* si = S + i * dim_y;
      for (int64_t j = 0; j < dim_y; ++j) si[j] += coef * yr[j];
    }
  }
}

// out_r += coef[r] · x_r M for each row r: x is L×dim_in, M is dim_in×dim_out.
inline void rows_times_matrix(const float* x, const float* coef, const float* M, int L,
                              int64_t dim_in, int64_t dim_out, float* out) {
  for (int r = 0; r < L; ++r) {
    const float* xr = x + r * dim_in;
    float* orow = out + r * dim_out;
    for (int64_t i = 0; i < dim_in; ++i) {
      const float a = coef[r] * xr[i];
      const float* mi = M + i * dim_out;
      for (int64_t j = 0; j < dim_out; ++j) orow[j] += a * mi[j];
    }
  }
}

// A block of the block form: rows [t0, t0 + len), len <= B. With packed documents
// (kernels/documents.h) no block crosses a boundary: each piece is cut into blocks from its first
// row (its last block may be short), start_doc >= 0 when the block's first row starts piece
// start_doc's document, end_doc >= 0 when its last row ends piece end_doc's document.
struct Block {
  int64_t t0 = 0;
  int len = 0;
  int64_t start_doc = -1, end_doc = -1;
};

// The blocks of p, in sequence order (p.block_size resolved).
inline std::vector<Block> plan_blocks(const Problem& p) {
  std::vector<Block> blocks;
  const int bk = p.block_size;
  const Documents& d = p.docs;
  const int64_t pieces = d.enabled() ? d.count : 1;
  for (int64_t i = 0; i < pieces; ++i) {
    const int64_t lo = d.enabled() ? d.offsets[i] : 0,
                  hi = d.enabled() ? d.offsets[i + 1] : p.seqlen;
    for (int64_t t = lo; t < hi; t += bk) {
      Block b;
      b.t0 = t;
      b.len = static_cast<int>(std::min<int64_t>(bk, hi - t));
      if (d.enabled()) {
        if (t == lo && d.starts_document(i)) b.start_doc = i;
        if (t + b.len == hi && d.ends_document(i)) b.end_doc = i;
      }
      blocks.push_back(b);
    }
  }
  return blocks;
}

// Element offset of head h's [D, E] state of piece i in a [K, H, D, E] per-piece array (B = 1).
inline int64_t doc_state_offset(const Problem& p, int64_t piece, int64_t h) {
  return (piece * p.heads + h) * p.qk_dim * p.v_dim;
}

// S <- the per-piece state `states` of piece i (0 when states is null).
inline void load_doc_state(const Problem& p, const float* states, int64_t piece, int64_t h,
                           std::vector<float>* S) {
  if (!states) return std::fill(S->begin(), S->end(), 0.0f);
  const float* s = states + doc_state_offset(p, piece, h);
  std::copy(s, s + S->size(), S->begin());
}

// Number of (b, h) pairs, the unit of CPU parallelism.
inline int64_t num_heads_total(const Problem& p) {
  return p.batch * p.heads;
}

inline int64_t state_offset(const Problem& p, int64_t b, int64_t h) {
  return (b * p.heads + h) * p.qk_dim * p.v_dim;
}

}  // namespace lightring::kernels::cpu
