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

#include "core/error.h"
#include "kernels/attention.h"
#include "testing/oracle.h"
#include "testing/tensors.h"

using namespace lightring;
using Clock = std::chrono::steady_clock;

namespace {

const char* const kUsage =
    "usage: lightring-cpu-demo [N] [H] [D] [E] [dtype]\n"
    "  CPU forward + backward of Lightning Attention-2 on random inputs (B=1, decay = the\n"
    "  per-head slopes, a random initial state); checks the forward output and final state\n"
    "  against the float64 recurrent form and prints the times.\n"
    "  N sequence length (65536), H heads (4), D q/k head dim (64), E v head dim (64),\n"
    "  dtype fp32 | bf16 | fp16 (fp32).\n"
    "  Exit status: 0 check passed, 1 check failed, 2 bad arguments.\n";

// Positional argument i as an integer, or fallback when it is absent.
int64_t int_arg(int argc, char** argv, int i, int64_t fallback) {
  if (argc <= i) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(argv[i], &end, 10);
  LR_CHECK(end != argv[i] && *end == '\0', "argument ", i, " must be an integer (got '", argv[i],
           "')");
  return v;
}

}  // namespace

int main(int argc, char** argv) try {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  LR_CHECK(argc <= 6, "at most 5 arguments (got ", argc - 1, ")");
  const int64_t N = int_arg(argc, argv, 1, 65536);
  const int64_t H = int_arg(argc, argv, 2, 4);
  const int64_t D = int_arg(argc, argv, 3, 64);
  const int64_t E = int_arg(argc, argv, 4, 64);
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
  std::fprintf(stderr, "lightring-cpu-demo: %s\n%s", e.what(), kUsage);
  return 2;
}
