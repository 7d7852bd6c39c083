// CPU backend vs the float64 closed-form oracle (docs/algorithm.md §1), over
// odd lengths, non-power-of-two dims, decay on/off, states on/off, all dtypes,
// and two block sizes. Forward, final state and every gradient are asserted.
#include <gtest/gtest.h>

#include <tuple>

#include "common/run_cpu.h"

namespace lightring::test {
namespace {

using Param = std::tuple<int64_t /*N*/, std::pair<int64_t, int64_t> /*D,E*/, bool /*decay*/,
                         bool /*states*/, DType>;

class CpuOracle : public ::testing::TestWithParam<Param> {};

TEST_P(CpuOracle, ForwardAndBackwardMatchFloat64) {
  const auto [N, de, decay_on, states, dtype] = GetParam();
  const Shape s =
      N >= 97 ? Shape{1, 2, N, de.first, de.second} : Shape{2, 3, N, de.first, de.second};
  const double scale = states ? 0.75 : 1.0;  // exercise c != 1 on half the cases
  const Problem pr =
      make_problem(s, dtype, decay_on, states, states, 1000 + N * 7 + de.first, scale);

  const OracleOut ref = oracle_forward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0);
  const OracleGrad gref =
      oracle_backward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0, pr.dod, pr.g);
  const double tol = tolerance(dtype);
  constexpr double kStateTol = 1e-4;  // fp32 states: only accumulation rounding

  for (int block : {16, 64}) {
    SCOPED_TRACE("block_size=" + std::to_string(block));
    const CpuForward f = run_forward(pr, block);
    EXPECT_LT(rel_err(f.o, ref.o), tol);
    EXPECT_LT(rel_err(f.final_state, ref.final_state), kStateTol);

    const CpuBackward g = run_backward(pr, block);
    EXPECT_LT(rel_err(g.dq, gref.dq), tol);
    EXPECT_LT(rel_err(g.dk, gref.dk), tol);
    EXPECT_LT(rel_err(g.dv, gref.dv), tol);
    EXPECT_LT(rel_err(g.ds0, gref.ds0), kStateTol);
  }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [N, de, decay_on, states, dtype] = info.param;
  return "N" + std::to_string(N) + "_D" + std::to_string(de.first) + "E" +
         std::to_string(de.second) + (decay_on ? "_decay" : "_nodecay") +
         (states ? "_states" : "_nostates") + "_" + kernels::dtype_name(dtype);
}

INSTANTIATE_TEST_SUITE_P(
    Sweep, CpuOracle,
    ::testing::Combine(::testing::Values<int64_t>(1, 2, 7, 63, 64, 65, 97, 1025),
                       ::testing::Values(std::make_pair<int64_t, int64_t>(16, 16),
                                         std::make_pair<int64_t, int64_t>(48, 80),
                                         std::make_pair<int64_t, int64_t>(64, 64),
                                         std::make_pair<int64_t, int64_t>(128, 128)),
                       ::testing::Bool(), ::testing::Bool(),
                       ::testing::Values(DType::kFloat32, DType::kBFloat16, DType::kFloat16)),
    param_name);

}  // namespace
}  // namespace lightring::test
