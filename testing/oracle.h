// The float64 closed-form oracle of docs/algorithm.md §1 (lightring_testing):
//
//     o_t = c·( λ^{t+1} q_t S0 + Σ_{j≤t} λ^{t-j} (q_t·k_j) v_j )
//
// and its exact gradients, plus the recurrent form S_t = λS_{t-1} + k_tᵀv_t
// for cross-checks. O(N²) per head: for small and medium N only.
// Tensors are contiguous [B,H,N,D] / [B,H,N,E] doubles, states [B,H,D,E].
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace lightring::test {

struct Shape {
  int64_t B, H, N, D, E;
};

struct OracleOut {
  std::vector<double> o, final_state;
};
struct OracleGrad {
  std::vector<double> dq, dk, dv, ds0;
};

inline double lambda_of(const std::vector<double>& decay, int64_t h) {
  return decay.empty() ? 1.0 : std::exp(-decay[h]);
}

// λ^n for n >= 0, computed as exp(-s·n): no negative exponents anywhere.
inline double lam_pow(const std::vector<double>& decay, int64_t h, int64_t n) {
  return decay.empty() ? 1.0 : std::exp(-decay[h] * static_cast<double>(n));
}

// Closed form. s0 may be empty (zero initial state).
inline OracleOut oracle_forward(const Shape& s, const std::vector<double>& q,
                                const std::vector<double>& k, const std::vector<double>& v,
                                const std::vector<double>& decay, double scale,
                                const std::vector<double>& s0) {
  OracleOut out;
  out.o.assign(s.B * s.H * s.N * s.E, 0.0);
  out.final_state.assign(s.B * s.H * s.D * s.E, 0.0);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t bh = b * s.H + h;
      const double* Q = &q[bh * s.N * s.D];
      const double* K = &k[bh * s.N * s.D];
      const double* V = &v[bh * s.N * s.E];
      const double* S0 = s0.empty() ? nullptr : &s0[bh * s.D * s.E];
      double* O = &out.o[bh * s.N * s.E];
      for (int64_t t = 0; t < s.N; ++t) {
        if (S0) {
          const double a = lam_pow(decay, h, t + 1);
          for (int64_t d = 0; d < s.D; ++d)
            for (int64_t e = 0; e < s.E; ++e)
              O[t * s.E + e] += a * Q[t * s.D + d] * S0[d * s.E + e];
        }
        for (int64_t j = 0; j <= t; ++j) {
          double qk = 0;
          for (int64_t d = 0; d < s.D; ++d) qk += Q[t * s.D + d] * K[j * s.D + d];
          const double w = qk * lam_pow(decay, h, t - j);
          for (int64_t e = 0; e < s.E; ++e) O[t * s.E + e] += w * V[j * s.E + e];
        }
        for (int64_t e = 0; e < s.E; ++e) O[t * s.E + e] *= scale;
      }
      // S_{N-1} = λ^N S0 + Σ_j λ^{N-1-j} k_jᵀ v_j.
      double* SF = &out.final_state[bh * s.D * s.E];
      for (int64_t d = 0; d < s.D; ++d)
        for (int64_t e = 0; e < s.E; ++e) {
          double acc = S0 ? lam_pow(decay, h, s.N) * S0[d * s.E + e] : 0.0;
          for (int64_t j = 0; j < s.N; ++j)
            acc += lam_pow(decay, h, s.N - 1 - j) * K[j * s.D + d] * V[j * s.E + e];
          SF[d * s.E + e] = acc;
        }
    }
  return out;
}

// Exact gradients of L = <dO, O> + <G, S_{N-1}> of the closed form. g may be empty.
inline OracleGrad oracle_backward(const Shape& s, const std::vector<double>& q,
                                  const std::vector<double>& k, const std::vector<double>& v,
                                  const std::vector<double>& decay, double scale,
                                  const std::vector<double>& s0, const std::vector<double>& dout,
                                  const std::vector<double>& g) {
  OracleGrad gr;
  gr.dq.assign(q.size(), 0.0);
  gr.dk.assign(k.size(), 0.0);
  gr.dv.assign(v.size(), 0.0);
  gr.ds0.assign(s.B * s.H * s.D * s.E, 0.0);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t bh = b * s.H + h;
      const double* Q = &q[bh * s.N * s.D];
      const double* K = &k[bh * s.N * s.D];
      const double* V = &v[bh * s.N * s.E];
      const double* dO = &dout[bh * s.N * s.E];
      const double* S0 = s0.empty() ? nullptr : &s0[bh * s.D * s.E];
      const double* G = g.empty() ? nullptr : &g[bh * s.D * s.E];
      double* dQ = &gr.dq[bh * s.N * s.D];
      double* dK = &gr.dk[bh * s.N * s.D];
      double* dV = &gr.dv[bh * s.N * s.E];
      double* dS0 = &gr.ds0[bh * s.D * s.E];
      for (int64_t t = 0; t < s.N; ++t) {
        for (int64_t j = 0; j <= t; ++j) {
          const double l = scale * lam_pow(decay, h, t - j);
          double qk = 0, dov = 0;
          for (int64_t d = 0; d < s.D; ++d) qk += Q[t * s.D + d] * K[j * s.D + d];
          for (int64_t e = 0; e < s.E; ++e) dov += dO[t * s.E + e] * V[j * s.E + e];
          for (int64_t d = 0; d < s.D; ++d) {
            dQ[t * s.D + d] += l * dov * K[j * s.D + d];
            dK[j * s.D + d] += l * dov * Q[t * s.D + d];
          }
          for (int64_t e = 0; e < s.E; ++e) dV[j * s.E + e] += l * qk * dO[t * s.E + e];
        }
        const double a = scale * lam_pow(decay, h, t + 1);
        for (int64_t d = 0; d < s.D; ++d)
          for (int64_t e = 0; e < s.E; ++e) {
            if (S0) dQ[t * s.D + d] += a * dO[t * s.E + e] * S0[d * s.E + e];
            dS0[d * s.E + e] += a * Q[t * s.D + d] * dO[t * s.E + e];
          }
      }
      if (G) {
        for (int64_t j = 0; j < s.N; ++j) {
          const double l = lam_pow(decay, h, s.N - 1 - j);
          for (int64_t d = 0; d < s.D; ++d)
            for (int64_t e = 0; e < s.E; ++e) {
              dK[j * s.D + d] += l * G[d * s.E + e] * V[j * s.E + e];
              dV[j * s.E + e] += l * G[d * s.E + e] * K[j * s.D + d];
            }
        }
        const double a = lam_pow(decay, h, s.N);
        for (int64_t i = 0; i < s.D * s.E; ++i) dS0[i] += a * G[i];
      }
    }
  return gr;
}

// The recurrent form, token by token, in float64: o and the final state.
inline OracleOut recurrent_forward(const Shape& s, const std::vector<double>& q,
                                   const std::vector<double>& k, const std::vector<double>& v,
                                   const std::vector<double>& decay, double scale,
                                   const std::vector<double>& s0) {
  OracleOut out;
  out.o.assign(s.B * s.H * s.N * s.E, 0.0);
  out.final_state.assign(s.B * s.H * s.D * s.E, 0.0);
  for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
    const int64_t h = bh % s.H;
    const double lam = lambda_of(decay, h);
    std::vector<double> S(s.D * s.E, 0.0);
    if (!s0.empty()) std::copy(&s0[bh * s.D * s.E], &s0[bh * s.D * s.E] + s.D * s.E, S.begin());
    for (int64_t t = 0; t < s.N; ++t) {
      const double* kt = &k[(bh * s.N + t) * s.D];
      const double* vt = &v[(bh * s.N + t) * s.E];
      const double* qt = &q[(bh * s.N + t) * s.D];
      for (int64_t d = 0; d < s.D; ++d)
        for (int64_t e = 0; e < s.E; ++e) S[d * s.E + e] = lam * S[d * s.E + e] + kt[d] * vt[e];
      double* ot = &out.o[(bh * s.N + t) * s.E];
      for (int64_t e = 0; e < s.E; ++e) {
        double acc = 0;
        for (int64_t d = 0; d < s.D; ++d) acc += qt[d] * S[d * s.E + e];
        ot[e] = scale * acc;
      }
    }
    std::copy(S.begin(), S.end(), &out.final_state[bh * s.D * s.E]);
  }
  return out;
}

// ‖a − b‖ / max(‖b‖, tiny): the error measure used by every test.
inline double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i];
    if (std::isnan(a[i])) return INFINITY;
    num += d * d;
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

}  // namespace lightring::test
