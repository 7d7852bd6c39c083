// Runs the CPU backend on HostTensors built from float64 data: the glue shared
// by the CPU kernel tests.
#pragma once

#include <random>
#include <vector>

#include "kernels/attention.h"
#include "testing/oracle.h"
#include "testing/tensors.h"

namespace lightring::test {

// One random problem: inputs rounded to dtype, and their exact float64 values.
struct Problem {
  Shape shape;
  DType dtype;
  HostTensor q, k, v, dout;
  std::vector<double> qd, kd, vd, dod, decay, s0, g;  // decay/s0/g empty when off
  std::vector<float> decay_f, s0_f, g_f;
  double scale = 1.0;
};

inline Problem make_problem(const Shape& s, DType dtype, bool decay_on, bool with_s0, bool with_g,
                            uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  Problem p{s, dtype, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, scale};
  // Scaled so that outputs stay O(1) for any D: q·k ~ N(0, 1/D)·D.
  const double sd = 1.0 / std::sqrt(std::sqrt(static_cast<double>(s.D)));
  p.q = random_tensor(s.B * s.H * s.N * s.D, dtype, rng, sd, &p.qd);
  p.k = random_tensor(s.B * s.H * s.N * s.D, dtype, rng, sd, &p.kd);
  p.v = random_tensor(s.B * s.H * s.N * s.E, dtype, rng, 1.0, &p.vd);
  p.dout = random_tensor(s.B * s.H * s.N * s.E, dtype, rng, 1.0, &p.dod);
  if (decay_on) {
    std::vector<float> sl(s.H);
    kernels::slopes(s.H, sl.data());
    p.decay_f = sl;
    p.decay = to_double(sl);
  }
  if (with_s0) {
    p.s0_f = to_float(randn(s.B * s.H * s.D * s.E, rng, 0.5));
    p.s0 = to_double(p.s0_f);
  }
  if (with_g) {
    p.g_f = to_float(randn(s.B * s.H * s.D * s.E, rng, 0.5));
    p.g = to_double(p.g_f);
  }
  return p;
}

inline void fill_problem(const Problem& pr, int block_size, kernels::Problem* k) {
  k->device = kernels::Device::kCpu;
  k->dtype = pr.dtype;
  k->batch = pr.shape.B;
  k->heads = pr.shape.H;
  k->seqlen = pr.shape.N;
  k->qk_dim = pr.shape.D;
  k->v_dim = pr.shape.E;
  k->decay = pr.decay_f.empty() ? nullptr : pr.decay_f.data();
  k->scale = static_cast<float>(pr.scale);
  k->block_size = block_size;
}

struct CpuForward {
  std::vector<double> o, final_state;
};
struct CpuBackward {
  std::vector<double> dq, dk, dv, ds0;
};

inline CpuForward run_forward(const Problem& pr, int block_size) {
  const Shape& s = pr.shape;
  HostTensor o(pr.dtype, s.B * s.H * s.N * s.E);
  o.poison();
  std::vector<float> fs(s.B * s.H * s.D * s.E, std::nanf(""));
  kernels::ForwardParams p;
  fill_problem(pr, block_size, &p);
  p.q = pr.q.data();
  p.k = pr.k.data();
  p.v = pr.v.data();
  p.o = o.data();
  p.q_stride = p.k_stride = kernels::contiguous_bhnd(s.H, s.N, s.D);
  p.v_stride = p.o_stride = kernels::contiguous_bhnd(s.H, s.N, s.E);
  p.initial_state = pr.s0_f.empty() ? nullptr : pr.s0_f.data();
  p.final_state = fs.data();
  kernels::forward(p);
  return {o.to_double(), to_double(fs)};
}

inline CpuBackward run_backward(const Problem& pr, int block_size) {
  const Shape& s = pr.shape;
  HostTensor dq(pr.dtype, pr.q.numel()), dk(pr.dtype, pr.k.numel()), dv(pr.dtype, pr.v.numel());
  dq.poison();
  dk.poison();
  dv.poison();
  std::vector<float> ds0(s.B * s.H * s.D * s.E, std::nanf(""));
  kernels::BackwardParams p;
  fill_problem(pr, block_size, &p);
  p.q = pr.q.data();
  p.k = pr.k.data();
  p.v = pr.v.data();
  p.d_o = pr.dout.data();
  p.dq = dq.data();
  p.dk = dk.data();
  p.dv = dv.data();
  p.q_stride = p.k_stride = p.dq_stride = p.dk_stride = kernels::contiguous_bhnd(s.H, s.N, s.D);
  p.v_stride = p.do_stride = p.dv_stride = kernels::contiguous_bhnd(s.H, s.N, s.E);
  p.initial_state = pr.s0_f.empty() ? nullptr : pr.s0_f.data();
  p.d_final_state = pr.g_f.empty() ? nullptr : pr.g_f.data();
  p.d_initial_state = ds0.data();
  kernels::backward(p);
  return {dq.to_double(), dk.to_double(), dv.to_double(), to_double(ds0)};
}

// The local pairs of §3 in float64: A = Σ λ^{N-1-t} k_tᵀ v_t, C = Σ c·λ^{t+1} q_tᵀ dO_t.
inline void oracle_local_states(const Problem& pr, std::vector<double>* a, std::vector<double>* c) {
  const Shape& s = pr.shape;
  a->assign(s.B * s.H * s.D * s.E, 0.0);
  c->assign(s.B * s.H * s.D * s.E, 0.0);
  for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
    const int64_t h = bh % s.H;
    for (int64_t t = 0; t < s.N; ++t) {
      const double wa = lam_pow(pr.decay, h, s.N - 1 - t),
                   wc = pr.scale * lam_pow(pr.decay, h, t + 1);
      for (int64_t d = 0; d < s.D; ++d) {
        const double kd = wa * pr.kd[(bh * s.N + t) * s.D + d],
                     qd = wc * pr.qd[(bh * s.N + t) * s.D + d];
        for (int64_t e = 0; e < s.E; ++e) {
          (*a)[(bh * s.D + d) * s.E + e] += kd * pr.vd[(bh * s.N + t) * s.E + e];
          (*c)[(bh * s.D + d) * s.E + e] += qd * pr.dod[(bh * s.N + t) * s.E + e];
        }
      }
    }
  }
}

// Relative-error tolerance of a kernel output for the input dtype: fp32
// accumulation everywhere, so the error is the rounding of the stored output
// plus accumulated fp32 rounding.
inline double tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 2e-5;
    case DType::kBFloat16:
      return 8e-3;
    case DType::kFloat16:
      return 1.5e-3;
  }
  return 0;
}

}  // namespace lightring::test
