// The two-phase ForwardPass / BackwardPass of kernels/attention.h on the CUDA
// backend, driven as the sequence-parallel runtime drives them (construct,
// local_state(), finish() with S0 / G), against the one-shot entry points on
// the same inputs and against the float64 oracle (docs/algorithm.md §1, §3):
// o, final state, dQ, dK, dV, dS0 and the pairs A and C.
//
// Segments: with G > 1 segments phase 1 combines from a zero state and
// finish() adds λ^{g·seg_len}·S0 (forward) or λ^{g·seg_len}·G (the reversed
// backward view) to every segment's entering state (seed_segments in
// kernels/cuda/combine.cu); LIGHTRING_CUDA_SEG_LEN forces 64- and 192-row
// segments at small N so that path runs with many segments, a short last one
// included. seg_len 0 is the natural plan (one segment at small N).
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "cuda/cuda_runner.h"

namespace lightring::test {
namespace {

using Dims = std::pair<int64_t, int64_t>;
using Param =
    std::tuple<int64_t /*N*/, Dims, bool /*decay*/, bool /*states*/, DType, int64_t /*seg_len*/>;

class CudaPasses : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!kernels::cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  }
};

TEST_P(CudaPasses, EqualOneShotAndFloat64) {
  const auto [N, de, decay_on, states, dtype, seg_len] = GetParam();
  const Shape s{1, 2, N, de.first, de.second};
  const double scale = states ? 0.75 : 1.0;
  const Problem pr = make_problem(s, dtype, decay_on, states, states,
                                  9000 + N * 7 + de.first + decay_on * 3 + seg_len, scale);
  CudaResults one, two;
  {
    ScopedSegLen forced(seg_len);
    one = run_cuda(pr, /*bnhd=*/false, 0, Run::kOneShot);
    two = run_cuda(pr, /*bnhd=*/false, 0, Run::kTwoPhase);
  }
  // Same scans; only the order of fp32 additions into the entering states
  // differs (S0 seeded after the combine instead of before), so the results
  // agree far inside the oracle tolerance.
  const double tol = cuda_tolerance(dtype);
  const double same = tol / 4;
  EXPECT_LT(rel_err(two.o, one.o), same) << "o vs one-shot";
  EXPECT_LT(rel_err(two.final_state, one.final_state), same) << "final_state vs one-shot";
  EXPECT_LT(rel_err(two.dq, one.dq), same) << "dq vs one-shot";
  EXPECT_LT(rel_err(two.dk, one.dk), same) << "dk vs one-shot";
  EXPECT_LT(rel_err(two.dv, one.dv), same) << "dv vs one-shot";
  EXPECT_LT(rel_err(two.ds0, one.ds0), same) << "ds0 vs one-shot";
  EXPECT_LT(rel_err(two.state_fwd, one.state_fwd), same) << "A vs local_state";
  EXPECT_LT(rel_err(two.state_bwd, one.state_bwd), same) << "C vs local_state";

  const OracleOut ref = oracle_forward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0);
  const OracleGrad gref =
      oracle_backward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0, pr.dod, pr.g);
  std::vector<double> a_ref, c_ref;
  oracle_local_states(pr, &a_ref, &c_ref);
  EXPECT_LT(rel_err(two.o, ref.o), tol) << "o";
  EXPECT_LT(rel_err(two.final_state, ref.final_state), tol) << "final_state";
  EXPECT_LT(rel_err(two.dq, gref.dq), tol) << "dq";
  EXPECT_LT(rel_err(two.dk, gref.dk), tol) << "dk";
  EXPECT_LT(rel_err(two.dv, gref.dv), tol) << "dv";
  EXPECT_LT(rel_err(two.ds0, gref.ds0), tol) << "ds0";
  EXPECT_LT(rel_err(two.state_fwd, a_ref), tol) << "A = ForwardPass::local_state()";
  EXPECT_LT(rel_err(two.state_bwd, c_ref), tol) << "C = BackwardPass::local_state()";
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [N, de, decay_on, states, dtype, seg_len] = info.param;
  return "N" + std::to_string(N) + "_D" + std::to_string(de.first) + "E" +
         std::to_string(de.second) + (decay_on ? "_decay" : "_nodecay") +
         (states ? "_states" : "_nostates") + "_" + kernels::dtype_name(dtype) + "_seg" +
         std::to_string(seg_len);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaPasses,
                         ::testing::Combine(::testing::Values<int64_t>(37, 333, 1000),
                                            ::testing::Values(Dims{64, 64}, Dims{48, 80},
                                                              Dims{128, 128}),
                                            ::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(DType::kFloat32, DType::kBFloat16),
                                            ::testing::Values<int64_t>(0, 64, 192)),
                         param_name);

}  // namespace
}  // namespace lightring::test
