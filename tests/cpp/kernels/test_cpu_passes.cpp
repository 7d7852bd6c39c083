// The two-phase ForwardPass / BackwardPass of kernels/attention.h on the CPU
// backend, used as the sequence-parallel runtime uses them (construct,
// local_state(), then finish() with S0 / G), against the one-shot forward /
// backward (the same arithmetic: equal bit for bit) and against the float64
// oracle (docs/algorithm.md §1, §3): outputs, final state, every gradient,
// dS0 and the pairs A and C. Odd lengths, N = 1, decay on/off, states on/off.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>

#include "common/run_cpu.h"
#include "core/error.h"

namespace lightring::test {
namespace {

struct PassResults {
  CpuForward fwd;
  CpuBackward bwd;
  std::vector<double> a, c;  // the pairs from local_state()
};

kernels::ForwardParams forward_params(const Problem& pr, int block_size, HostTensor* o) {
  const Shape& s = pr.shape;
  kernels::ForwardParams p;
  fill_problem(pr, block_size, &p);
  p.q = pr.q.data();
  p.k = pr.k.data();
  p.v = pr.v.data();
  p.o = o->data();
  p.q_stride = p.k_stride = kernels::contiguous_bhnd(s.H, s.N, s.D);
  p.v_stride = p.o_stride = kernels::contiguous_bhnd(s.H, s.N, s.E);
  return p;
}

// Phase 1, local_state(), then finish(); `ask_pair` false skips local_state().
PassResults run_passes(const Problem& pr, int block_size, bool ask_pair = true) {
  const Shape& s = pr.shape;
  const size_t de = s.B * s.H * s.D * s.E;
  const float* s0 = pr.s0_f.empty() ? nullptr : pr.s0_f.data();
  const float* g = pr.g_f.empty() ? nullptr : pr.g_f.data();
  PassResults r;

  HostTensor o(pr.dtype, pr.v.numel());
  o.poison();
  std::vector<float> fs(de, std::nanf(""));
  kernels::ForwardParams f = forward_params(pr, block_size, &o);
  {
    kernels::ForwardPass pass(f);
    if (ask_pair) {
      const float* a = pass.local_state();
      r.a = to_double(std::vector<float>(a, a + de));
    }
    pass.finish(s0, fs.data());
  }
  r.fwd = {o.to_double(), to_double(fs)};

  HostTensor dq(pr.dtype, pr.q.numel()), dk(pr.dtype, pr.k.numel()), dv(pr.dtype, pr.v.numel());
  dq.poison();
  dk.poison();
  dv.poison();
  std::vector<float> ds0(de, std::nanf(""));
  kernels::BackwardParams b =
      kernels::backward_params(f, pr.dout.data(), dq.data(), dk.data(), dv.data());
  b.initial_state = s0;
  {
    kernels::BackwardPass pass(b);
    if (ask_pair) {
      const float* c = pass.local_state();
      r.c = to_double(std::vector<float>(c, c + de));
    }
    pass.finish(g, ds0.data());
  }
  r.bwd = {dq.to_double(), dk.to_double(), dv.to_double(), to_double(ds0)};
  return r;
}

using Dims = std::pair<int64_t, int64_t>;
using Param = std::tuple<int64_t /*N*/, Dims, bool /*decay*/, bool /*states*/, DType>;

class CpuPasses : public ::testing::TestWithParam<Param> {};

TEST_P(CpuPasses, EqualOneShotAndFloat64) {
  const auto [N, de, decay_on, states, dtype] = GetParam();
  const Shape s{2, 3, N, de.first, de.second};
  const double scale = states ? 0.75 : 1.0;
  const Problem pr = make_problem(s, dtype, decay_on, states, states,
                                  4000 + N * 11 + de.first + decay_on * 3, scale);
  constexpr int kBlock = 16;  // several blocks, a short last one

  const PassResults r = run_passes(pr, kBlock);
  const CpuForward f = run_forward(pr, kBlock);
  const CpuBackward g = run_backward(pr, kBlock);
  // The CPU passes run the one-shot functions: identical results.
  EXPECT_EQ(r.fwd.o, f.o);
  EXPECT_EQ(r.fwd.final_state, f.final_state);
  EXPECT_EQ(r.bwd.dq, g.dq);
  EXPECT_EQ(r.bwd.dk, g.dk);
  EXPECT_EQ(r.bwd.dv, g.dv);
  EXPECT_EQ(r.bwd.ds0, g.ds0);

  const OracleOut ref = oracle_forward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0);
  const OracleGrad gref =
      oracle_backward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0, pr.dod, pr.g);
  std::vector<double> a_ref, c_ref;
  oracle_local_states(pr, &a_ref, &c_ref);
  const double tol = tolerance(dtype);
  constexpr double kStateTol = 1e-4;  // fp32 states: only accumulation rounding
  EXPECT_LT(rel_err(r.fwd.o, ref.o), tol) << "o";
  EXPECT_LT(rel_err(r.fwd.final_state, ref.final_state), kStateTol) << "final_state";
  EXPECT_LT(rel_err(r.bwd.dq, gref.dq), tol) << "dq";
  EXPECT_LT(rel_err(r.bwd.dk, gref.dk), tol) << "dk";
  EXPECT_LT(rel_err(r.bwd.dv, gref.dv), tol) << "dv";
  EXPECT_LT(rel_err(r.bwd.ds0, gref.ds0), kStateTol) << "ds0";
  EXPECT_LT(rel_err(r.a, a_ref), kStateTol) << "A = ForwardPass::local_state()";
  EXPECT_LT(rel_err(r.c, c_ref), kStateTol) << "C = BackwardPass::local_state()";
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [N, de, decay_on, states, dtype] = info.param;
  return "N" + std::to_string(N) + "_D" + std::to_string(de.first) + "E" +
         std::to_string(de.second) + (decay_on ? "_decay" : "_nodecay") +
         (states ? "_states" : "_nostates") + "_" + kernels::dtype_name(dtype);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuPasses,
                         ::testing::Combine(::testing::Values<int64_t>(1, 37, 130),
                                            ::testing::Values(Dims{16, 16}, Dims{24, 40}),
                                            ::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(DType::kFloat32, DType::kBFloat16)),
                         param_name);

// final = λ^N·s0 + A and dS0 = λ^N·G + C: the identities the sequence-parallel
// combine relies on, checked on the pass's own pair.
TEST(CpuPassesProperties, FinalStatesAreSeededPairs) {
  const Shape s{1, 2, 75, 8, 12};
  const Problem pr = make_problem(s, DType::kFloat32, true, true, true, 77, 0.5);
  const PassResults r = run_passes(pr, 32);
  const size_t de = s.D * s.E;
  std::vector<double> final_ref(r.a.size()), ds0_ref(r.c.size());
  for (int64_t h = 0; h < s.H; ++h) {
    const double aN = lam_pow(pr.decay, h, s.N);
    for (size_t i = h * de; i < (h + 1) * de; ++i) {
      final_ref[i] = aN * pr.s0[i] + r.a[i];
      ds0_ref[i] = aN * pr.g[i] + r.c[i];
    }
  }
  EXPECT_LT(rel_err(r.fwd.final_state, final_ref), 1e-5);
  EXPECT_LT(rel_err(r.bwd.ds0, ds0_ref), 1e-5);
}

// A caller that never asks for the pair (the last rank in forward, rank 0 in
// backward) gets the same outputs.
TEST(CpuPassesProperties, FinishWithoutAskingForThePair) {
  const Shape s{2, 2, 101, 16, 24};
  const Problem pr = make_problem(s, DType::kBFloat16, true, true, true, 78, 0.75);
  const PassResults with = run_passes(pr, 64, /*ask_pair=*/true);
  const PassResults without = run_passes(pr, 64, /*ask_pair=*/false);
  EXPECT_EQ(with.fwd.o, without.fwd.o);
  EXPECT_EQ(with.fwd.final_state, without.fwd.final_state);
  EXPECT_EQ(with.bwd.dq, without.bwd.dq);
  EXPECT_EQ(with.bwd.dk, without.bwd.dk);
  EXPECT_EQ(with.bwd.dv, without.bwd.dv);
  EXPECT_EQ(with.bwd.ds0, without.bwd.ds0);
}

TEST(CpuPassesProperties, BadInputThrowsAtConstructionAndFinishRunsOnce) {
  const Shape s{1, 1, 10, 4, 4};
  const Problem pr = make_problem(s, DType::kFloat32, false, false, false, 79);
  HostTensor o(pr.dtype, pr.v.numel());
  kernels::ForwardParams f = forward_params(pr, 0, &o);
  kernels::ForwardParams bad = f;
  bad.k = nullptr;
  EXPECT_THROW(kernels::ForwardPass{bad}, lightring::Error);
  kernels::ForwardPass pass(f);
  pass.finish(nullptr, nullptr);
  EXPECT_THROW(pass.finish(nullptr, nullptr), lightring::Error);

  HostTensor dq(pr.dtype, pr.q.numel()), dk(pr.dtype, pr.k.numel()), dv(pr.dtype, pr.v.numel());
  kernels::BackwardParams b =
      kernels::backward_params(f, pr.dout.data(), dq.data(), dk.data(), dv.data());
  kernels::BackwardParams bad_b = b;
  bad_b.dv = nullptr;
  EXPECT_THROW(kernels::BackwardPass{bad_b}, lightring::Error);
  kernels::BackwardPass bpass(b);
  bpass.finish(nullptr, nullptr);
  EXPECT_THROW(bpass.finish(nullptr, nullptr), lightring::Error);
}

}  // namespace
}  // namespace lightring::test
