// The two-phase ForwardPass / BackwardPass of kernels/attention.h on the CUDA
// backend, driven as the sequence-parallel runtime drives them (construct,
// local_state(), finish() with S0 / G), against the one-shot entry points on
// the same inputs and against the float64 oracle (docs/algorithm.md §1, §3):
// o, final state, dQ, dK, dV, dS0 and the pairs A and C.
//
// Segments: with G > 1 segments phase 1 combines from a zero state and
// finish() adds λ^{g·seg_len}·S0 (forward) or λ^{g·seg_len}·G (the reversed
// backward view) to every segment's entering state (seed_segments in
// kernels/cuda/combine.cu); KernelTuning::segment_len forces 64- and 192-row
// segments at small N so that path runs with many segments, a short last one
// included. seg_len 0 is the natural plan (one segment at small N).
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "cuda/cuda_runner.h"
#include "cuda/precision_reference.h"

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
  expect_results_close(two, one, tol / 4, "two-phase vs one-shot");
  expect_matches_float64(two, pr, oracle_results(pr), "two-phase vs float64");
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
