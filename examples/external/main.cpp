// A C++ program using the installed lightring (find_package(lightring), linked
// to lightring::lightring), run under mpirun on the CPU backend:
//
//   1. kernels::forward on the whole sequence against the recurrent form in
//      double, S_t = λ_h·S_{t-1} + k_tᵀ v_t, o_t = c·q_t S_t (S_{-1} = 0);
//   2. parallel::forward over an MpiCommunicator with the sequence cut into one
//      shard per rank (unequal lengths), against the unsharded output of 1.
//
// Exit status 0 when every check passes on every rank, 1 otherwise.
#include <cmath>
#include <cstdio>
#include <vector>

#include "comm/mpi_communicator.h"
#include "core/error.h"
#include "kernels/attention.h"
#include "parallel/sequence_parallel.h"

namespace kernels = lightring::kernels;
namespace parallel = lightring::parallel;

namespace {

constexpr int64_t kB = 1, kH = 2, kN = 203, kD = 16, kE = 8;

// Deterministic inputs in [-1, 1).
std::vector<float> inputs(size_t n, unsigned seed) {
  std::vector<float> x(n);
  unsigned s = seed;
  for (auto& v : x) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<float>(s >> 8) / static_cast<float>(1u << 23) - 1.0f;
  }
  return x;
}

kernels::ForwardParams params(int64_t n, const float* decay, const float* q, const float* k,
                              const float* v, float* o) {
  kernels::ForwardParams p;
  p.device = kernels::Device::kCpu;
  p.dtype = lightring::DType::kFloat32;
  p.batch = kB;
  p.heads = kH;
  p.seqlen = n;
  p.qk_dim = kD;
  p.v_dim = kE;
  p.decay = decay;
  p.scale = 1.0f / std::sqrt(static_cast<float>(kD));
  p.q = q;
  p.k = k;
  p.v = v;
  p.o = o;
  p.q_stride = p.k_stride = kernels::contiguous_bhnd(kH, n, kD);
  p.v_stride = p.o_stride = kernels::contiguous_bhnd(kH, n, kE);
  return p;
}

// max |a − b| / max(max |b|, 1e-30).
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0.0, ref = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::fmax(diff, std::fabs(a[i] - b[i]));
    ref = std::fmax(ref, std::fabs(b[i]));
  }
  return diff / ref;
}

}  // namespace

int main(int argc, char** argv) {
  lightring::comm::MpiEnvironment env(&argc, &argv);
  int failures = 0;
  try {
    lightring::comm::MpiCommunicator world;
    const int rank = world.rank(), P = world.size();
    const std::vector<float> q = inputs(kB * kH * kN * kD, 1), k = inputs(kB * kH * kN * kD, 2),
                             v = inputs(kB * kH * kN * kE, 3);
    std::vector<float> decay(kH);
    kernels::slopes(kH, decay.data());

    // 1. The whole sequence on this rank, against the recurrence in double.
    std::vector<float> o(kB * kH * kN * kE);
    kernels::forward(params(kN, decay.data(), q.data(), k.data(), v.data(), o.data()));
    std::vector<double> ref(o.size()), got(o.begin(), o.end());
    const double c = 1.0 / std::sqrt(static_cast<double>(kD));
    for (int64_t h = 0; h < kH; ++h) {
      const double lambda = std::exp(-static_cast<double>(decay[h]));
      std::vector<double> S(kD * kE, 0.0);
      for (int64_t t = 0; t < kN; ++t) {
        const float* qt = &q[(h * kN + t) * kD];
        const float* kt = &k[(h * kN + t) * kD];
        const float* vt = &v[(h * kN + t) * kE];
        for (int64_t i = 0; i < kD; ++i)
          for (int64_t j = 0; j < kE; ++j) S[i * kE + j] = lambda * S[i * kE + j] + kt[i] * vt[j];
        for (int64_t j = 0; j < kE; ++j) {
          double acc = 0.0;
          for (int64_t i = 0; i < kD; ++i) acc += qt[i] * S[i * kE + j];
          ref[(h * kN + t) * kE + j] = c * acc;
        }
      }
    }
    const double e1 = rel_err(got, ref);
    std::printf("rank %d: kernels::forward vs float64 recurrence: rel err %.2e\n", rank, e1);
    if (!(e1 < 1e-5)) ++failures;

    // 2. Shard r holds rows [b(r), b(r+1)), b(r) = ⌊N·r(r+1) / (P(P+1))⌋: lengths grow with r.
    auto boundary = [&](int64_t r) { return kN * r * (r + 1) / (int64_t{P} * (P + 1)); };
    const int64_t begin = boundary(rank), n = boundary(rank + 1) - begin;
    LR_CHECK(n >= 1, "too many ranks (", P, ") for ", kN, " rows");
    auto shard = [&](const std::vector<float>& x, int64_t dim) {
      std::vector<float> s(kH * n * dim);
      for (int64_t h = 0; h < kH; ++h)
        for (int64_t t = 0; t < n; ++t)
          for (int64_t i = 0; i < dim; ++i)
            s[(h * n + t) * dim + i] = x[(h * kN + begin + t) * dim + i];
      return s;
    };
    const std::vector<float> qs = shard(q, kD), ks = shard(k, kD), vs = shard(v, kE);
    std::vector<float> os(kH * n * kE), s_in(kB * kH * kD * kE);
    parallel::Options options;
    options.schedule = parallel::Schedule::kRing;
    parallel::forward(world, params(n, decay.data(), qs.data(), ks.data(), vs.data(), os.data()),
                      s_in.data(), options);
    const std::vector<float> expect = shard(o, kE);
    const double e2 = rel_err(std::vector<double>(os.begin(), os.end()),
                              std::vector<double>(expect.begin(), expect.end()));
    std::printf("rank %d of %d: rows [%lld, %lld): parallel::forward vs unsharded: rel err %.2e\n",
                rank, P, static_cast<long long>(begin), static_cast<long long>(begin + n), e2);
    if (!(e2 < 1e-5)) ++failures;

    // Every rank learns every rank's verdict, so all exit with the same status.
    std::vector<int64_t> all(P);
    const int64_t mine = failures;
    world.all_gather_host(&mine, all.data(), 1);
    failures = 0;
    for (int64_t f : all) failures += static_cast<int>(f);
  } catch (const lightring::Error& e) {
    return env.end_after_failure(e.what(), 1, 10.0);
  }
  if (failures) std::fprintf(stderr, "lightring-external: %d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
