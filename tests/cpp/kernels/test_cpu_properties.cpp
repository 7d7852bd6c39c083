// Structural properties of the CPU backend: block form == recurrent form,
// independence of the block size, strided [B,N,H,D] layout == [B,H,N,D],
// local state pairs == the states of a zero-initialised pass, and the slopes.
#include <gtest/gtest.h>

#include <cmath>

#include "common/run_cpu.h"

namespace lightring::test {
namespace {

TEST(CpuProperties, BlockFormEqualsRecurrentForm) {
  const Shape s{2, 3, 333, 24, 40};
  const Problem pr = make_problem(s, DType::kFloat32, true, true, false, 11);
  const OracleOut rec = recurrent_forward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0);
  const CpuForward f = run_forward(pr, 64);
  EXPECT_LT(rel_err(f.o, rec.o), 2e-5);
  EXPECT_LT(rel_err(f.final_state, rec.final_state), 2e-5);
}

TEST(CpuProperties, ResultsDoNotDependOnBlockSize) {
  const Shape s{1, 2, 517, 32, 32};
  const Problem pr = make_problem(s, DType::kFloat32, true, true, true, 12);
  const CpuForward ref = run_forward(pr, 64);
  const CpuBackward gref = run_backward(pr, 64);
  for (int block : {1, 5, 16, 100, 256}) {
    SCOPED_TRACE("block_size=" + std::to_string(block));
    const CpuForward f = run_forward(pr, block);
    const CpuBackward g = run_backward(pr, block);
    EXPECT_LT(rel_err(f.o, ref.o), 1e-5);
    EXPECT_LT(rel_err(f.final_state, ref.final_state), 1e-5);
    EXPECT_LT(rel_err(g.dq, gref.dq), 1e-5);
    EXPECT_LT(rel_err(g.dk, gref.dk), 1e-5);
    EXPECT_LT(rel_err(g.dv, gref.dv), 1e-5);
    EXPECT_LT(rel_err(g.ds0, gref.ds0), 1e-5);
  }
}

// Builds a [B,N,H,dim] copy of a [B,H,N,dim] tensor.
HostTensor to_bnhd(const HostTensor& x, const Shape& s, int64_t dim) {
  HostTensor y(x.dtype(), x.numel());
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t t = 0; t < s.N; ++t)
        for (int64_t j = 0; j < dim; ++j)
          y.set(((b * s.N + t) * s.H + h) * dim + j, x.get(((b * s.H + h) * s.N + t) * dim + j));
  return y;
}

TEST(CpuProperties, StridedBnhdLayoutMatchesBhnd) {
  const Shape s{2, 3, 70, 16, 8};
  const Problem pr = make_problem(s, DType::kBFloat16, true, false, false, 13);
  const CpuForward ref = run_forward(pr, 16);
  const HostTensor q = to_bnhd(pr.q, s, s.D), k = to_bnhd(pr.k, s, s.D), v = to_bnhd(pr.v, s, s.E);
  HostTensor o(pr.dtype, pr.v.numel());
  o.poison();
  kernels::ForwardParams p;
  fill_problem(pr, 16, &p);
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.o = o.data();
  p.q_stride = p.k_stride = kernels::contiguous_bnhd(s.H, s.N, s.D);
  p.v_stride = p.o_stride = kernels::contiguous_bnhd(s.H, s.N, s.E);
  kernels::forward(p);
  // Compare element by element after mapping back to [B,H,N,E].
  size_t mismatches = 0;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t t = 0; t < s.N; ++t)
        for (int64_t e = 0; e < s.E; ++e) {
          const double got = o.get(((b * s.N + t) * s.H + h) * s.E + e);
          const double want = ref.o[((b * s.H + h) * s.N + t) * s.E + e];
          if (!(got == want)) ++mismatches;
        }
  EXPECT_EQ(mismatches, 0u);
}

TEST(CpuProperties, LocalStatePairsMatchZeroStatePasses) {
  const Shape s{2, 2, 201, 24, 20};
  Problem pr = make_problem(s, DType::kFloat16, true, false, false, 14, 0.5);
  const CpuForward f = run_forward(pr, 32);    // zero initial state: final state == A
  const CpuBackward g = run_backward(pr, 32);  // zero G: dS0 == C

  for (auto kind : {kernels::StateKind::kForward, kernels::StateKind::kBackward}) {
    std::vector<float> state(s.B * s.H * s.D * s.E, std::nanf(""));
    kernels::StateParams p;
    fill_problem(pr, 48, &p);  // a different block size on purpose
    p.kind = kind;
    const bool fwd = kind == kernels::StateKind::kForward;
    p.x = fwd ? pr.k.data() : pr.q.data();
    p.y = fwd ? pr.v.data() : pr.dout.data();
    p.x_stride = kernels::contiguous_bhnd(s.H, s.N, s.D);
    p.y_stride = kernels::contiguous_bhnd(s.H, s.N, s.E);
    p.state = state.data();
    kernels::local_state(p);
    EXPECT_LT(rel_err(to_double(state), fwd ? f.final_state : g.ds0), 1e-5);
  }

  std::vector<float> a(s.H);
  kernels::segment_decay(pr.decay_f.data(), s.H, s.N, a.data());
  for (int64_t h = 0; h < s.H; ++h) EXPECT_NEAR(a[h], std::exp(-pr.decay[h] * s.N), 1e-7);
}

TEST(Slopes, PowerOfTwoAndOtherHeadCounts) {
  std::vector<float> s8(8);
  kernels::slopes(8, s8.data());
  for (int h = 0; h < 8; ++h) EXPECT_FLOAT_EQ(s8[h], std::pow(2.0f, -(h + 1.0f)));
  // H = 12: the 8 slopes of P = 8, then slopes 0, 2, 4, 6 of 2P = 16.
  std::vector<float> s12(12);
  kernels::slopes(12, s12.data());
  for (int h = 0; h < 8; ++h) EXPECT_FLOAT_EQ(s12[h], s8[h]);
  for (int j = 0; j < 4; ++j) EXPECT_FLOAT_EQ(s12[8 + j], std::pow(2.0f, -8.0f * (2 * j + 1) / 16));
}

}  // namespace
}  // namespace lightring::test
