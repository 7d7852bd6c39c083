// A same-precision reference for the CUDA tests (flash-attention's convention): the chunked
// scan of kernels/cuda/scan.h evaluated in float64 on the test's inputs, with every operand of
// a tensor-core product rounded to the precision the GPU gives it, and the 16-bit outputs
// rounded to their element type. Per scan over 64-row chunks (rows reversed for the backward
// scans), with X the carried state:
//
//     O_i    = Σ_{j<=i} rnd(c_intra·λ^{i-j} q_i·k_j) v_j + c_inter·λ^{i+1-σ} q_i rnd(X)
//     X_next = λ^L X + Σ_r rnd(c_state·λ^{L-1-r+σ} k_r) ⊗ v_r
//
// rnd() rounds to the operand precision: bf16 / fp16 for 16-bit inputs (inputs are already in
// it), tf32 (cvt.rna: 10 mantissa bits) for fp32 inputs, whose q, k, v are rounded too. The
// GPU's rounding points differ in detail between families (split-K rounds two partial P
// halves, the fused scan rounds V·Γ in dQ), so the reference gives the size of the error a
// correct kernel makes, not its bits. The tests bound the kernel's error against float64 by a
// small multiple of this reference's error, per output, both in relative norm and in max-abs:
// a single wrong 64-row tile moves the max-abs error far past that bound.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/cuda_runner.h"

namespace lightring::test {

// x rounded to the operand precision of dtype on the GPU's tensor cores (round to nearest even
// for bf16 / fp16, to nearest with ties away for tf32), through float as the kernels do.
inline double operand_round(DType dtype, double x) {
  const float f = static_cast<float>(x);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (!std::isfinite(f)) return f;
  switch (dtype) {
    case DType::kBFloat16:
      u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
      break;
    case DType::kFloat32:  // tf32: 10 mantissa bits, cvt.rna
      u = (u + 0x1000u) & 0xffffe000u;
      break;
    case DType::kFloat16: {
      // Round to a multiple of the fp16 spacing at |f| (subnormals below 2^-14: spacing 2^-24).
      const double a = std::fabs(static_cast<double>(f));
      if (a == 0.0) return 0.0;
      const int e = std::max(std::ilogb(a), -14);
      const double ulp = std::ldexp(1.0, e - 10);
      return std::nearbyint(static_cast<double>(f) / ulp) * ulp;
    }
  }
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// One scan of one (b, h): rows [0, n) of q [n][dk], k [n][dk], v [n][dv] (float64, already in
// the operand precision), in reversed row order when `reversed`; x is the state [dk][dv] on
// entry and on exit; o [n][dv] receives the output rows (unrounded) when not null.
struct EmulatedScan {
  DType dtype;
  int64_t n, dk, dv;
  double lambda, c_intra, c_inter, c_state;
  int shift;
  bool reversed;

  void run(const double* q, const double* k, const double* v, double* x, double* o) const {
    constexpr int64_t kChunk = 64;
    auto row = [&](int64_t i) { return reversed ? n - 1 - i : i; };
    auto pw = [&](int64_t e) { return std::pow(lambda, static_cast<double>(e)); };
    std::vector<double> xr(dk * dv), kg(kChunk * dk);
    for (int64_t t0 = 0; t0 < n; t0 += kChunk) {
      const int64_t L = std::min(kChunk, n - t0);
      for (int64_t i = 0; i < dk * dv; ++i) xr[i] = operand_round(dtype, x[i]);
      if (o) {
        for (int64_t i = 0; i < L; ++i) {
          const double* qi = q + row(t0 + i) * dk;
          double* oi = o + row(t0 + i) * dv;
          std::fill(oi, oi + dv, 0.0);
          for (int64_t j = 0; j <= i; ++j) {
            const double* kj = k + row(t0 + j) * dk;
            double s = 0;
            for (int64_t d = 0; d < dk; ++d) s += qi[d] * kj[d];
            const double p = operand_round(dtype, c_intra * pw(i - j) * s);
            const double* vj = v + row(t0 + j) * dv;
            for (int64_t e = 0; e < dv; ++e) oi[e] += p * vj[e];
          }
          const double w = c_inter * pw(i + 1 - shift);
          for (int64_t d = 0; d < dk; ++d) {
            const double a = w * qi[d];
            for (int64_t e = 0; e < dv; ++e) oi[e] += a * xr[d * dv + e];
          }
        }
      }
      for (int64_t r = 0; r < L; ++r) {
        const double g = c_state * pw(L - 1 - r + shift);
        for (int64_t d = 0; d < dk; ++d)
          kg[r * dk + d] = operand_round(dtype, g * k[row(t0 + r) * dk + d]);
      }
      const double a = pw(L);
      for (int64_t i = 0; i < dk * dv; ++i) x[i] *= a;
      for (int64_t r = 0; r < L; ++r) {
        const double* vr = v + row(t0 + r) * dv;
        for (int64_t d = 0; d < dk; ++d) {
          const double kv = kg[r * dk + d];
          for (int64_t e = 0; e < dv; ++e) x[d * dv + e] += kv * vr[e];
        }
      }
    }
  }
};

// Every output of run_cuda from the emulated scans (the passes of kernels/cuda/attention.cu):
//   o, final state:  forward scan (q, k, v), scales (c, c, 1), σ = 0, X = S from S0
//   dQ:              forward scan (dO, V, K), dims E × D, X = Sᵀ from S0ᵀ
//   dV, dS0:         reversed scan (K, Q, dO), scales (c, 1, c), σ = 1, X = dS from G
//   dK:              reversed scan (V, dO, Q), dims E × D, X = dSᵀ from Gᵀ
//   A, C:            the forward and the reversed state pass from a zero state.
inline CudaResults emulated_results(const Problem& pr) {
  const Shape& s = pr.shape;
  const DType dt = pr.dtype;
  const int64_t N = s.N, D = s.D, E = s.E, BH = s.B * s.H;
  auto rounded = [&](const std::vector<double>& x) {
    std::vector<double> r(x);
    for (double& y : r) y = operand_round(dt, y);
    return r;
  };
  // fp32 inputs reach the tf32 MMAs rounded; 16-bit inputs are exact in their type.
  const std::vector<double> q = rounded(pr.qd), k = rounded(pr.kd), v = rounded(pr.vd),
                            dout = rounded(pr.dod);
  auto out_round = [&](std::vector<double>* x) {
    if (dt == DType::kFloat32) return;
    for (double& y : *x) y = operand_round(dt, y);
  };
  auto transposed = [](const double* x, int64_t rows, int64_t cols) {
    std::vector<double> t(rows * cols);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) t[j * rows + i] = x[i * cols + j];
    return t;
  };
  CudaResults r;
  r.o.assign(BH * N * E, 0);
  r.dq.assign(BH * N * D, 0);
  r.dk.assign(BH * N * D, 0);
  r.dv.assign(BH * N * E, 0);
  r.final_state.assign(BH * D * E, 0);
  r.ds0.assign(BH * D * E, 0);
  r.state_fwd.assign(BH * D * E, 0);
  r.state_bwd.assign(BH * D * E, 0);
  const double c = pr.scale;
  for (int64_t bh = 0; bh < BH; ++bh) {
    const double lam = lambda_of(pr.decay, bh % s.H);
    const double *qb = q.data() + bh * N * D, *kb = k.data() + bh * N * D;
    const double *vb = v.data() + bh * N * E, *db = dout.data() + bh * N * E;
    std::vector<double> s0(D * E, 0.0), g(D * E, 0.0);
    if (!pr.s0.empty()) std::copy_n(pr.s0.begin() + bh * D * E, D * E, s0.begin());
    if (!pr.g.empty()) std::copy_n(pr.g.begin() + bh * D * E, D * E, g.begin());
    const EmulatedScan fwd{dt, N, D, E, lam, c, c, 1.0, 0, false};
    const EmulatedScan fwd_t{dt, N, E, D, lam, c, c, 1.0, 0, false};
    const EmulatedScan rev{dt, N, D, E, lam, c, 1.0, c, 1, true};
    const EmulatedScan rev_t{dt, N, E, D, lam, c, 1.0, c, 1, true};
    std::vector<double> x = s0;
    fwd.run(qb, kb, vb, x.data(), r.o.data() + bh * N * E);
    std::copy(x.begin(), x.end(), r.final_state.begin() + bh * D * E);
    x = transposed(s0.data(), D, E);
    fwd_t.run(db, vb, kb, x.data(), r.dq.data() + bh * N * D);
    x = g;
    rev.run(kb, qb, db, x.data(), r.dv.data() + bh * N * E);
    std::copy(x.begin(), x.end(), r.ds0.begin() + bh * D * E);
    x = transposed(g.data(), D, E);
    rev_t.run(vb, db, qb, x.data(), r.dk.data() + bh * N * D);
    x.assign(D * E, 0.0);
    fwd.run(nullptr, kb, vb, x.data(), nullptr);
    std::copy(x.begin(), x.end(), r.state_fwd.begin() + bh * D * E);
    x.assign(D * E, 0.0);
    rev.run(nullptr, qb, db, x.data(), nullptr);
    std::copy(x.begin(), x.end(), r.state_bwd.begin() + bh * D * E);
  }
  out_round(&r.o);
  out_round(&r.dq);
  out_round(&r.dk);
  out_round(&r.dv);
  return r;
}

inline double max_abs_err(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return std::isnan(m) ? HUGE_VAL : m;
}

inline double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::fabs(x));
  return m;
}

// The bound's multiples of the reference's error: kRelMultiple for the relative norm error,
// kAbsMultiple for the max-abs error, plus a floor of kFloor·max|want| for outputs the
// reference computes (nearly) exactly (e.g. states of a 1-row sequence).
constexpr double kRelMultiple = 3.0, kAbsMultiple = 4.0, kFloor = 1e-5;

// The largest error-to-reference ratios seen in this process, printed at exit.
struct PrecisionRatios {
  double rel = 0, abs = 0;
  std::string rel_where, abs_where;
  ~PrecisionRatios() {
    if (rel > 0)
      std::printf(
          "[ info     ] worst error / same-precision reference: relative %.2f (%s), "
          "max-abs %.2f (%s)\n",
          rel, rel_where.c_str(), abs, abs_where.c_str());
  }
};
inline PrecisionRatios& precision_ratios() {
  static PrecisionRatios r;
  return r;
}

// One output: its error against float64 within the multiples of the same-precision
// reference's error (emu vs want), in relative norm and in max-abs; the reference itself
// within the family tolerance of float64 (a check of the reference).
inline void expect_output_close(const std::vector<double>& got, const std::vector<double>& emu,
                                const std::vector<double>& want, double tol,
                                const std::string& name) {
  const double scale = max_abs(want), floor = kFloor * (scale > 0 ? scale : 1.0);
  const double rel_ref = rel_err(emu, want), abs_ref = max_abs_err(emu, want);
  const double rel_got = rel_err(got, want), abs_got = max_abs_err(got, want);
  EXPECT_LT(rel_ref, tol) << name << ": the same-precision reference itself";
  EXPECT_LE(rel_got, kRelMultiple * rel_ref + kFloor)
      << name << ": relative error " << rel_got << ", reference's " << rel_ref;
  EXPECT_LE(abs_got, kAbsMultiple * abs_ref + floor)
      << name << ": max-abs error " << abs_got << ", reference's " << abs_ref << " (max |value| "
      << scale << ")";
  PrecisionRatios& pr = precision_ratios();
  const std::string where =
      name + " " + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  if (rel_ref > 0 && rel_got / (rel_ref + kFloor / kRelMultiple) > pr.rel) {
    pr.rel = rel_got / (rel_ref + kFloor / kRelMultiple);
    pr.rel_where = where;
  }
  if (abs_ref > 0 && abs_got / (abs_ref + floor / kAbsMultiple) > pr.abs) {
    pr.abs = abs_got / (abs_ref + floor / kAbsMultiple);
    pr.abs_where = where;
  }
}

// Every output of `got` against float64 (`want`) with the bound of expect_output_close, the
// reference computed from pr.
inline void expect_matches_float64(const CudaResults& got, const Problem& pr,
                                   const CudaResults& want, const std::string& what) {
  const CudaResults emu = emulated_results(pr);
  const double tol = cuda_tolerance(pr.dtype);
  expect_output_close(got.o, emu.o, want.o, tol, "o " + what);
  expect_output_close(got.final_state, emu.final_state, want.final_state, tol,
                      "final_state " + what);
  expect_output_close(got.dq, emu.dq, want.dq, tol, "dq " + what);
  expect_output_close(got.dk, emu.dk, want.dk, tol, "dk " + what);
  expect_output_close(got.dv, emu.dv, want.dv, tol, "dv " + what);
  expect_output_close(got.ds0, emu.ds0, want.ds0, tol, "ds0 " + what);
  expect_output_close(got.state_fwd, emu.state_fwd, want.state_fwd, tol, "A " + what);
  expect_output_close(got.state_bwd, emu.state_bwd, want.state_bwd, tol, "C " + what);
}

}  // namespace lightring::test
