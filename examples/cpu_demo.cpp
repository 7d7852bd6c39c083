// lightring-cpu-demo [N] [H] [D] [E] [dtype]
//
// Runs the CPU backend forward and backward of Lightning Attention-2 on random
// inputs (decay = the per-head slopes, a random initial state), prints the
// forward error against the float64 recurrent form S_t = λS_{t-1} + k_tᵀv_t,
// o_t = q_t S_t, and the times. Defaults: N=65536, H=4, D=E=64, fp32, B=1.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/oracle.h"
#include "common/tensors.h"
#include "kernels/attention.h"
#include "kernels/error.h"

using namespace lightring;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) try {
  const int64_t N = argc > 1 ? std::atoll(argv[1]) : 65536;
  const int64_t H = argc > 2 ? std::atoll(argv[2]) : 4;
  const int64_t D = argc > 3 ? std::atoll(argv[3]) : 64;
  const int64_t E = argc > 4 ? std::atoll(argv[4]) : 64;
  const kernels::DType dtype = kernels::parse_dtype(argc > 5 ? argv[5] : "fp32");
  const test::Shape s{1, H, N, D, E};
  std::printf("# lightring-cpu-demo: B=1 H=%lld N=%lld D=%lld E=%lld dtype=%s decay=slopes\n",
              (long long)H, (long long)N, (long long)D, (long long)E, kernels::dtype_name(dtype));

  std::mt19937_64 rng(42);
  std::vector<double> qd, kd, vd, dod;
  const double sd = 1.0 / std::sqrt(std::sqrt(static_cast<double>(D)));
  test::HostTensor q = test::random_tensor(H * N * D, dtype, rng, sd, &qd);
  test::HostTensor k = test::random_tensor(H * N * D, dtype, rng, sd, &kd);
  test::HostTensor v = test::random_tensor(H * N * E, dtype, rng, 1.0, &vd);
  test::HostTensor dout = test::random_tensor(H * N * E, dtype, rng, 1.0, &dod);
  std::vector<float> decay(H), s0 = test::to_float(test::randn(H * D * E, rng, 0.5));
  kernels::slopes(H, decay.data());
  test::HostTensor o(dtype, H * N * E), dq(dtype, H * N * D), dk(dtype, H * N * D),
      dv(dtype, H * N * E);
  std::vector<float> final_state(H * D * E), ds0(H * D * E);

  kernels::ForwardParams f;
  f.dtype = dtype;
  f.batch = 1;
  f.heads = H;
  f.seqlen = N;
  f.qk_dim = D;
  f.v_dim = E;
  f.decay = decay.data();
  f.q = q.data();
  f.k = k.data();
  f.v = v.data();
  f.o = o.data();
  f.q_stride = f.k_stride = kernels::contiguous_bhnd(H, N, D);
  f.v_stride = f.o_stride = kernels::contiguous_bhnd(H, N, E);
  f.initial_state = s0.data();
  f.final_state = final_state.data();

  kernels::BackwardParams b =
      kernels::backward_params(f, dout.data(), dq.data(), dk.data(), dv.data());
  b.initial_state = s0.data();
  b.d_initial_state = ds0.data();

  const auto t0 = Clock::now();
  kernels::forward(f);
  const auto t1 = Clock::now();
  kernels::backward(b);
  const auto t2 = Clock::now();
  const double fwd_s = std::chrono::duration<double>(t1 - t0).count();
  const double bwd_s = std::chrono::duration<double>(t2 - t1).count();

  std::vector<double> decay_d(decay.begin(), decay.end());
  const test::OracleOut ref =
      test::recurrent_forward(s, qd, kd, vd, decay_d, 1.0, test::to_double(s0));
  const double err_o = test::rel_err(o.to_double(), ref.o);
  const double err_s = test::rel_err(test::to_double(final_state), ref.final_state);

  std::printf("%-10s %10s %10s %14s %14s %14s\n", "#", "fwd_ms", "bwd_ms", "tokens/s", "err_o",
              "err_state");
  std::printf("%-10s %10.1f %10.1f %14.3e %14.3e %14.3e\n", "cpu", fwd_s * 1e3, bwd_s * 1e3,
              N / (fwd_s + bwd_s), err_o, err_s);
  const double tol = dtype == kernels::DType::kFloat32 ? 1e-4 : 1e-2;
  const bool ok = err_o < tol && err_s < 1e-4;
  std::printf("# forward vs float64 recurrent form: %s (tolerance %.0e)\n", ok ? "OK" : "FAILED",
              tol);
  return ok ? 0 : 1;
} catch (const lightring::Error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 2;
}
