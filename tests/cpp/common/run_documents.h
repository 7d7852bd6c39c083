// Packed documents through the two-phase passes of kernels/attention.h, shard by shard in one
// process, the way the sequence-parallel runtime chains them (docs/algorithm.md §5): forward
// left to right with S_in(r) = S_out(r-1), backward right to left with G(r) = dS_in(r+1). Every
// pass also hands over its pair, which the caller checks against the chained states:
//
//     S_out(r)  = a_r·S_in(r) + A_r,    a_r = 0 if forward_reset(r) else λ^{n_r}
//     dS_in(r)  = b_r·G(r) + C_r,       b_r = 0 if backward_reset(r) else λ^{n_r}
//
// The shared glue of the CPU and CUDA document suites; `Memory` moves states and tensors to the
// backend's memory and back (host: identity).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "common/run_cpu.h"
#include "kernels/attention.h"
#include "testing/documents_oracle.h"
#include "testing/tensors.h"

namespace lightring::test {

struct DocsRun {
  std::vector<double> o, final_states, dq, dk, dv, d_initial_states;
  double pair_err = 0;  // worst relative error of the pair identities above
};

inline std::vector<int64_t> offsets_of(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> cu(lengths.size() + 1, 0);
  std::partial_sum(lengths.begin(), lengths.end(), cu.begin() + 1);
  return cu;
}

// y = a·x + y in double, per head (a per head), for [H, per_head] states.
inline std::vector<double> axpy_heads(const std::vector<double>& x, const std::vector<double>& y,
                                      const std::vector<double>& a, int64_t per_head) {
  std::vector<double> r = y;
  for (size_t i = 0; i < r.size(); ++i) r[i] += a[i / per_head] * x[i];
  return r;
}

inline std::vector<double> pair_scalars(const std::vector<double>& decay, int64_t H, int64_t n,
                                        bool reset) {
  std::vector<double> a(H);
  for (int64_t h = 0; h < H; ++h) a[h] = reset ? 0.0 : lam_pow(decay, h, n);
  return a;
}

// Compares a run of problem pr (stream offsets cu, document states s0 and final-state
// gradients g, empty when none) with the per-document float64 oracle: outputs and input
// gradients within tol, per-document final states and initial-state gradients (when s0 was
// given) within state_tol, the pair identities within pair_tol.
inline void expect_documents_close(const DocsRun& got, const Problem& pr,
                                   const std::vector<int64_t>& cu, const std::vector<float>& s0,
                                   const std::vector<float>& g, double tol, double state_tol,
                                   double pair_tol) {
  const Shape& s = pr.shape;
  const DocumentsOut want =
      documents_forward(s, cu, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, to_double(s0));
  const DocumentsGrad grad = documents_backward(s, cu, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale,
                                                to_double(s0), pr.dod, to_double(g));
  EXPECT_LT(rel_err(got.o, want.o), tol);
  EXPECT_LT(rel_err(got.final_states, want.final_states), state_tol);
  EXPECT_LT(rel_err(got.dq, grad.dq), tol);
  EXPECT_LT(rel_err(got.dk, grad.dk), tol);
  EXPECT_LT(rel_err(got.dv, grad.dv), tol);
  if (!s0.empty()) EXPECT_LT(rel_err(got.d_initial_states, grad.d_initial_states), state_tol);
  EXPECT_LT(got.pair_err, pair_tol);
  // Each document on its own: no state leaked from its predecessor.
  const int64_t per = s.H * s.D * s.E, docs = static_cast<int64_t>(cu.size()) - 1;
  for (int64_t d = 0; d < docs; ++d) {
    const auto row = [&](const std::vector<double>& x) {
      return std::vector<double>(x.begin() + d * per, x.begin() + (d + 1) * per);
    };
    EXPECT_LT(rel_err(row(got.final_states), row(want.final_states)), state_tol)
        << "document " << d;
  }
}

}  // namespace lightring::test
