// CUDA backend vs the float64 closed-form oracle (docs/algorithm.md §1):
// forward, final state, dQ, dK, dV, dS0 and both local states (§3), over odd
// lengths (N < 64 included), the (D, E) pairs of issue 4, decay on/off,
// states on/off, fp32 / bf16 / fp16, both layouts, one and many segments, and every kernel
// family (kernels/cuda/family.h): tf32 for fp32; for 16-bit inputs the families of
// KernelTuning::family, auto (wgmma on an H100/H200 sm_90a build) and mma (the sm_80 path).
// Every output is NaN-poisoned before the run; inputs are fresh per case.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <tuple>

#include "cuda/cuda_runner.h"
#include "cuda/precision_reference.h"
#include "kernels/cuda/family.h"
#include "kernels/cuda/segments.h"

namespace lightring::test {
namespace {

using Dims = std::pair<int64_t, int64_t>;
using Family = kernels::KernelTuning::Family;
using Param = std::tuple<int64_t /*N*/, Dims, bool /*decay*/, bool /*states*/, DType, Family>;

void check_case(const Shape& s, DType dtype, bool decay_on, bool states, bool bnhd, int64_t seg_len,
                uint64_t seed) {
  const double scale = states ? 0.75 : 1.0;
  const Problem pr = make_problem(s, dtype, decay_on, states, states, seed, scale);
  CudaResults r;
  {
    ScopedSegLen forced(seg_len);
    r = run_cuda(pr, bnhd);
  }
  expect_matches_float64(r, pr, oracle_results(pr), "vs float64");
}

class CudaOracle : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!kernels::cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  }
};

TEST_P(CudaOracle, MatchesFloat64) {
  const auto [N, de, decay_on, states, dtype, family] = GetParam();
  if (dtype == DType::kFloat32 && family != Family::kAuto)
    GTEST_SKIP() << "fp32 inputs run the tf32 family only";
  ScopedFamily use(family);
  const Shape s =
      N >= 97 ? Shape{1, 2, N, de.first, de.second} : Shape{2, 3, N, de.first, de.second};
  const uint64_t seed = 7000 + N * 13 + de.first * 3 + de.second + decay_on * 5 + states * 11;
  // Long cases also run with 64-row segments: many segments and the combine of §3.
  check_case(s, dtype, decay_on, states, /*bnhd=*/false, /*seg_len=*/0, seed);
  if (N >= 97) {
    SCOPED_TRACE("seg_len=64");
    check_case(s, dtype, decay_on, states, /*bnhd=*/false, 64, seed + 1);
  }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [N, de, decay_on, states, dtype, family] = info.param;
  return "N" + std::to_string(N) + "_D" + std::to_string(de.first) + "E" +
         std::to_string(de.second) + (decay_on ? "_decay" : "_nodecay") +
         (states ? "_states" : "_nostates") + "_" + kernels::dtype_name(dtype) + "_" +
         kernels::family_name(family);
}

const auto kDims = ::testing::Values(Dims{16, 16}, Dims{48, 80}, Dims{64, 64}, Dims{128, 64},
                                     Dims{128, 128}, Dims{192, 192}, Dims{256, 128});
const auto kDtypes = ::testing::Values(DType::kFloat32, DType::kBFloat16, DType::kFloat16);
const auto kFamilies = ::testing::Values(Family::kAuto, Family::kMma);

INSTANTIATE_TEST_SUITE_P(Short, CudaOracle,
                         ::testing::Combine(::testing::Values<int64_t>(1, 37, 130), kDims,
                                            ::testing::Bool(), ::testing::Bool(), kDtypes,
                                            kFamilies),
                         param_name);

// Several natural segments (B·H = 2 gives G = N / 256 segments).
INSTANTIATE_TEST_SUITE_P(Long, CudaOracle,
                         ::testing::Combine(::testing::Values<int64_t>(1000), kDims,
                                            ::testing::Values(true), ::testing::Values(true),
                                            kDtypes, kFamilies),
                         param_name);

class CudaLayout : public CudaOracle {};

// [B, N, H, D] inputs and outputs through strides, odd D, both segment regimes.
TEST_F(CudaLayout, BnhdStridesMatchFloat64) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    SCOPED_TRACE(kernels::dtype_name(dtype));
    check_case(Shape{2, 3, 333, 40, 24}, dtype, true, true, /*bnhd=*/true, 0, 99);
    check_case(Shape{2, 3, 333, 40, 24}, dtype, true, true, /*bnhd=*/true, 128, 100);
  }
}

// KernelTuning::family selects the family of 16-bit scans: wgmma where it covers the shape on an
// sm_90a build running on compute capability 9.0 (else mma), mma everywhere under kMma.
TEST(CudaFamily, TuningSelectsTheFamily) {
  using kernels::cuda::family_of;
  EXPECT_TRUE(kernels::cuda::mma_covers(DType::kBFloat16, 256));
  EXPECT_TRUE(kernels::cuda::mma_covers(DType::kFloat16, 1));
  EXPECT_FALSE(kernels::cuda::mma_covers(DType::kFloat32, 64));
  EXPECT_FALSE(kernels::cuda::mma_covers(DType::kBFloat16, 264));
  EXPECT_EQ(kernels::cuda::mma_width(64, 48), 64);
  EXPECT_EQ(kernels::cuda::mma_width(128, 100), 128);
  EXPECT_EQ(kernels::cuda::mma_width(256, 256), 64);
  if (!kernels::cuda_available()) return;
  const bool sm90a = kernels::cuda::sm90a_device();
  std::printf("[ info     ] sm_90a device: %s\n", sm90a ? "yes (wgmma family)" : "no");
  const std::string fast = sm90a ? "wgmma" : "mma";
  EXPECT_EQ(family_of(DType::kFloat32, 128, 128), std::string("tf32"));
  EXPECT_EQ(family_of(DType::kBFloat16, 128, 128), fast);
  EXPECT_EQ(family_of(DType::kFloat16, 48, 80), fast);
  EXPECT_EQ(family_of(DType::kBFloat16, 64, 64), fast);   // one warpgroup
  EXPECT_EQ(family_of(DType::kBFloat16, 128, 64), fast);  // split-K, dk block 128
  EXPECT_EQ(family_of(DType::kFloat16, 96, 80), fast);
  EXPECT_EQ(family_of(DType::kBFloat16, 200, 136), fast);
  EXPECT_EQ(family_of(DType::kBFloat16, 192, 192), fast);  // split-K
  EXPECT_EQ(family_of(DType::kFloat16, 256, 128), fast);
  ScopedFamily mma(Family::kMma);
  EXPECT_EQ(family_of(DType::kBFloat16, 128, 128), std::string("mma"));
  EXPECT_EQ(family_of(DType::kFloat32, 128, 128), std::string("tf32"));
}

// Every wgmma instantiation (dk block 64 with 64- and 128-column slices, 128 with 128, split-K
// with dk block 128 or 256 and 64-column slices) on aligned rows: every dk block, both slice
// widths, partial slices (dv = 96, 48, 100, 80, 40, 136), two and four slices (dv = 256),
// D != E both ways (E = D/2, E = 2D, 96×80, 200×136), both layouts, partial chunks and both
// segment regimes; the same cases again on the mma family.
TEST_F(CudaLayout, EveryFamilyShapeMatchesFloat64) {
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    for (Family family : {Family::kAuto, Family::kMma}) {
      ScopedFamily use(family);
      for (const Dims de :
           {Dims{128, 96}, Dims{64, 128}, Dims{96, 128}, Dims{128, 256}, Dims{64, 64}, Dims{32, 48},
            Dims{256, 256}, Dims{144, 100}, Dims{200, 64}, Dims{128, 64}, Dims{128, 32},
            Dims{96, 80}, Dims{80, 40}, Dims{200, 136}, Dims{64, 256}}) {
        SCOPED_TRACE(std::string(kernels::dtype_name(dtype)) + " " + kernels::family_name(family) +
                     " D=" + std::to_string(de.first) + " E=" + std::to_string(de.second));
        const uint64_t seed = 200 + de.first + de.second;
        check_case(Shape{2, 2, 333, de.first, de.second}, dtype, true, true, /*bnhd=*/true, 0,
                   seed);
        check_case(Shape{1, 3, 333, de.first, de.second}, dtype, true, true, /*bnhd=*/false, 64,
                   seed + 1);
        check_case(Shape{1, 2, 1, de.first, de.second}, dtype, false, true, /*bnhd=*/false, 0,
                   seed + 2);
      }
    }
  }
}

// The fused single-pass forward (kernels/cuda/scan_wgmma.cuh, Mode::kFused) on its natural
// segments (plan_segments: several at these lengths) against the state pass + combine + output pass
// it replaces (KernelTuning::fused off, itself checked against float64 above) and, where the
// quadratic oracle is affordable, against float64: both wgmma slice widths, two dv slices
// (dv = 256), dk = 96, split-K (dk = 256, 192), partial last chunks, initial and final states,
// bf16 and fp16. The oracle
// cases run it with 64- and 192-row segments (many links of the chain) as well.
TEST_F(CudaLayout, FusedScanMatchesTwoPassAndFloat64) {
  if (!kernels::cuda::wgmma_covers(DType::kBFloat16, 128, 128))
    GTEST_SKIP() << "the wgmma family does not run on this device";
  struct Case {
    Shape s;
    DType dtype;
  };
  const Case cases[] = {{Shape{2, 16, 1100, 128, 128}, DType::kBFloat16},
                        {Shape{1, 8, 40000, 128, 128}, DType::kBFloat16},
                        {Shape{2, 4, 30001, 64, 64}, DType::kFloat16},
                        {Shape{1, 8, 30001, 128, 64}, DType::kBFloat16},
                        {Shape{1, 2, 2500, 128, 48}, DType::kFloat16},
                        {Shape{1, 4, 20000, 96, 256}, DType::kBFloat16},
                        {Shape{1, 4, 20000, 256, 128}, DType::kBFloat16},
                        {Shape{1, 2, 2500, 192, 192}, DType::kFloat16}};
  for (const Case& c : cases) {
    SCOPED_TRACE("B=" + std::to_string(c.s.B) + " H=" + std::to_string(c.s.H) +
                 " N=" + std::to_string(c.s.N) + " D=" + std::to_string(c.s.D) +
                 " E=" + std::to_string(c.s.E));
    kernels::Problem kp;
    kp.dtype = c.dtype;
    kp.batch = c.s.B;
    kp.heads = c.s.H;
    kp.seqlen = c.s.N;
    kp.qk_dim = c.s.D;
    kp.v_dim = c.s.E;
    const int segs = kernels::cuda::plan_segments(kp, static_cast<int>(c.s.E)).num_segs;
    std::printf("[ info     ] fused scan B=%ld H=%ld N=%ld: %d segments\n",
                static_cast<long>(c.s.B), static_cast<long>(c.s.H), static_cast<long>(c.s.N), segs);
    EXPECT_GT(segs, 1) << "the case must run the fused scan's chain";
    const Problem pr = make_problem(c.s, c.dtype, true, true, true, 300 + c.s.N, 0.75);
    kernels::KernelTuning unfused = kernels::kernel_tuning();
    unfused.fused = false;
    CudaResults two;
    {
      ScopedTuning use(unfused);
      two = run_cuda(pr, false);
    }
    const CudaResults one = run_cuda(pr, false);
    // The fused state phase rounds the other operand of its Kᵀ Γ V update to 16 bits (dQ: V
    // scaled by Γ, where the S prefix scales K), so fused and two-pass differ by 16-bit
    // rounding of the states, not only by the order of fp32 additions.
    const double tol = cuda_tolerance(c.dtype);
    expect_results_close(one, two, tol / 2, "fused vs two-pass");
    if (c.s.B * c.s.H * c.s.N <= 40000)
      expect_matches_float64(one, pr, oracle_results(pr), "fused vs float64");
  }
}

// The decay window (scan.h: ScanParams::window): with strong decays the state passes and the
// fused scan's state phases skip all but a segment's last chunks. Decays 0.02 .. 3 (windows of
// 36, 5, 2 and 2 chunks) on 1024-row segments, so that the fused forward and dQ and the two-pass
// dV / dK all run truncated, against float64 (outputs, gradients, final state, dS0).
TEST_F(CudaLayout, DecayWindowMatchesFloat64) {
  for (const DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    for (const Dims de : {Dims{64, 64}, Dims{128, 128}}) {
      SCOPED_TRACE(std::string(kernels::dtype_name(dtype)) + " D=" + std::to_string(de.first));
      const Shape s{1, 4, 3000, de.first, de.second};
      Problem pr = make_problem(s, dtype, true, true, true, 4100 + de.first, 0.75);
      pr.decay_f = {0.02f, 0.2f, 1.0f, 3.0f};
      pr.decay = to_double(pr.decay_f);
      kernels::cuda::forget_checked_decay();
      CudaResults r;
      {
        ScopedSegLen forced(1024);
        r = run_cuda(pr, false);
      }
      expect_matches_float64(r, pr, oracle_results(pr), "vs float64");
    }
  }
}

// dv = 100: one partial 128-column slice of the mma family (kernels/cuda/family.h); rows not
// 16-byte aligned (element-wise loads), both segment regimes.
TEST_F(CudaLayout, WideOddValueDimMatchesFloat64) {
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    SCOPED_TRACE(kernels::dtype_name(dtype));
    check_case(Shape{2, 3, 333, 40, 100}, dtype, true, true, /*bnhd=*/true, 0, 101);
    check_case(Shape{2, 3, 333, 40, 100}, dtype, true, true, /*bnhd=*/false, 128, 102);
  }
}

// Block size is accepted for any value and does not change the function.
TEST_F(CudaLayout, AnyBlockSizeGivesTheSameFunction) {
  const Shape s{1, 2, 200, 64, 64};
  const Problem pr = make_problem(s, DType::kBFloat16, true, true, true, 5, 0.5);
  const OracleOut ref = oracle_forward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0);
  for (int block : {1, 17, 64, 256}) {
    const CudaResults r = run_cuda(pr, false, block);
    EXPECT_LT(rel_err(r.o, ref.o), cuda_tolerance(DType::kBFloat16)) << "block_size " << block;
  }
}

TEST_F(CudaLayout, NegativeDecayOnTheDeviceIsRejected) {
  const Shape s{1, 2, 16, 16, 16};
  Problem pr = make_problem(s, DType::kBFloat16, true, false, false, 3);
  pr.decay_f[1] = -0.5f;
  // The array's address may be one an earlier test's valid decay had (checked once per pointer).
  kernels::cuda::forget_checked_decay();
  EXPECT_THROW(run_cuda(pr, false), lightring::Error);
  pr.decay_f[1] = 0.5f;  // the same call with a valid decay runs
  kernels::cuda::forget_checked_decay();
  EXPECT_NO_THROW(run_cuda(pr, false));
}

}  // namespace
}  // namespace lightring::test
