// The float64 oracle of packed documents (docs/algorithm.md §5, lightring_testing): each
// document of a B = 1 stream run on its own through oracle.h's closed form, states chained
// only within a document. Tensors are contiguous [1,H,T,D] / [1,H,T,E] doubles; per-document
// states are [N_docs,H,D,E]; cu holds the N_docs + 1 offsets 0 = cu[0] < … < cu[N_docs] = T.
#pragma once

#include <cstdint>
#include <vector>

#include "testing/oracle.h"

namespace lightring::test {

// Rows [t0, t0 + n) of every head of a [1,H,T,dim] tensor, as a [1,H,n,dim] tensor.
inline std::vector<double> take_rows(const std::vector<double>& x, int64_t H, int64_t T,
                                     int64_t dim, int64_t t0, int64_t n) {
  std::vector<double> out(H * n * dim);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < dim; ++j) out[(h * n + t) * dim + j] = x[(h * T + t0 + t) * dim + j];
  return out;
}

// The inverse of take_rows: writes a [1,H,n,dim] tensor into rows [t0, t0 + n) of x.
inline void put_rows(const std::vector<double>& part, int64_t H, int64_t T, int64_t dim, int64_t t0,
                     int64_t n, std::vector<double>* x) {
  for (int64_t h = 0; h < H; ++h)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < dim; ++j)
        (*x)[(h * T + t0 + t) * dim + j] = part[(h * n + t) * dim + j];
}

// Entry d of a [N_docs,H,D,E] array (empty stays empty: zero).
inline std::vector<double> doc_state(const std::vector<double>& states, int64_t per_doc,
                                     int64_t d) {
  if (states.empty()) return {};
  return std::vector<double>(states.begin() + d * per_doc, states.begin() + (d + 1) * per_doc);
}

struct DocumentsOut {
  std::vector<double> o;             // [1,H,T,E]
  std::vector<double> final_states;  // [N_docs,H,D,E]
};
struct DocumentsGrad {
  std::vector<double> dq, dk, dv;        // like q, k, v
  std::vector<double> d_initial_states;  // [N_docs,H,D,E]
};

// s.B must be 1 and s.N = T. s0 ([N_docs,H,D,E]) may be empty (every document starts from 0).
inline DocumentsOut documents_forward(const Shape& s, const std::vector<int64_t>& cu,
                                      const std::vector<double>& q, const std::vector<double>& k,
                                      const std::vector<double>& v,
                                      const std::vector<double>& decay, double scale,
                                      const std::vector<double>& s0) {
  const int64_t docs = static_cast<int64_t>(cu.size()) - 1, per_doc = s.H * s.D * s.E;
  DocumentsOut out;
  out.o.assign(s.H * s.N * s.E, 0.0);
  out.final_states.assign(docs * per_doc, 0.0);
  for (int64_t d = 0; d < docs; ++d) {
    const int64_t t0 = cu[d], n = cu[d + 1] - cu[d];
    const Shape sd{1, s.H, n, s.D, s.E};
    const OracleOut r =
        oracle_forward(sd, take_rows(q, s.H, s.N, s.D, t0, n), take_rows(k, s.H, s.N, s.D, t0, n),
                       take_rows(v, s.H, s.N, s.E, t0, n), decay, scale, doc_state(s0, per_doc, d));
    put_rows(r.o, s.H, s.N, s.E, t0, n, &out.o);
    std::copy(r.final_state.begin(), r.final_state.end(), out.final_states.begin() + d * per_doc);
  }
  return out;
}

// Exact gradients of L = <dO, O> + Σ_d <G_d, S_final(d)>; g ([N_docs,H,D,E]) may be empty.
inline DocumentsGrad documents_backward(const Shape& s, const std::vector<int64_t>& cu,
                                        const std::vector<double>& q, const std::vector<double>& k,
                                        const std::vector<double>& v,
                                        const std::vector<double>& decay, double scale,
                                        const std::vector<double>& s0,
                                        const std::vector<double>& dout,
                                        const std::vector<double>& g) {
  const int64_t docs = static_cast<int64_t>(cu.size()) - 1, per_doc = s.H * s.D * s.E;
  DocumentsGrad gr;
  gr.dq.assign(q.size(), 0.0);
  gr.dk.assign(k.size(), 0.0);
  gr.dv.assign(v.size(), 0.0);
  gr.d_initial_states.assign(docs * per_doc, 0.0);
  for (int64_t d = 0; d < docs; ++d) {
    const int64_t t0 = cu[d], n = cu[d + 1] - cu[d];
    const Shape sd{1, s.H, n, s.D, s.E};
    const OracleGrad r =
        oracle_backward(sd, take_rows(q, s.H, s.N, s.D, t0, n), take_rows(k, s.H, s.N, s.D, t0, n),
                        take_rows(v, s.H, s.N, s.E, t0, n), decay, scale, doc_state(s0, per_doc, d),
                        take_rows(dout, s.H, s.N, s.E, t0, n), doc_state(g, per_doc, d));
    put_rows(r.dq, s.H, s.N, s.D, t0, n, &gr.dq);
    put_rows(r.dk, s.H, s.N, s.D, t0, n, &gr.dk);
    put_rows(r.dv, s.H, s.N, s.E, t0, n, &gr.dv);
    std::copy(r.ds0.begin(), r.ds0.end(), gr.d_initial_states.begin() + d * per_doc);
  }
  return gr;
}

}  // namespace lightring::test
