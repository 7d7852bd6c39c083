// Shared pieces of the MPI test suites: a fixture whose TearDown makes a
// failure on any rank fail the test on every rank (an all-reduce that every
// rank reaches even after an ASSERT returned early), and the data of one
// sequence-parallel problem: the global tensors (identical on every rank, from
// one seed), a shard split, and the float64 oracle of the whole sequence.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/attention.h"
#include "testing/oracle.h"
#include "testing/tensors.h"

namespace lightring::test {

class MpiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
  }
  void TearDown() override {
    int mine = HasFailure() ? 1 : 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any && !mine) ADD_FAILURE() << "another rank failed this test (see its output)";
  }
  int world_rank_ = 0, world_size_ = 1;
};

// Shard lengths of a global length over P ranks: as equal as possible.
inline std::vector<int64_t> equal_split(int64_t n, int P) {
  std::vector<int64_t> len(P, n / P);
  for (int64_t i = 0; i < n % P; ++i) len[P - 1 - i] += 1;
  return len;
}

inline std::vector<int64_t> offsets_of(const std::vector<int64_t>& len) {
  std::vector<int64_t> off(len.size() + 1, 0);
  for (size_t i = 0; i < len.size(); ++i) off[i + 1] = off[i] + len[i];
  return off;
}

// Rows [t0, t0+n) of every (b,h) of a [B,H,N,dim] tensor, as a [B,H,n,dim] tensor.
inline std::vector<double> slice_rows(const std::vector<double>& x, int64_t BH, int64_t N,
                                      int64_t dim, int64_t t0, int64_t n) {
  std::vector<double> out(BH * n * dim);
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < dim; ++i)
        out[(bh * n + t) * dim + i] = x[(bh * N + t0 + t) * dim + i];
  return out;
}

// One global problem, identical on every rank.
struct GlobalProblem {
  Shape s;
  bool decay_on = true, with_states = false;
  double scale = 1.0;
  std::vector<double> q, k, v, dout, decay, s0, g;
  OracleOut out;
  OracleGrad grad;

  GlobalProblem(Shape shape, bool use_decay, bool states, uint64_t seed,
                DType dtype = DType::kFloat32)
      : s(shape), decay_on(use_decay), with_states(states) {
    std::mt19937_64 rng(seed);
    random_tensor(s.B * s.H * s.N * s.D, dtype, rng, 1.0, &q);
    random_tensor(s.B * s.H * s.N * s.D, dtype, rng, 1.0, &k);
    random_tensor(s.B * s.H * s.N * s.E, dtype, rng, 1.0, &v);
    random_tensor(s.B * s.H * s.N * s.E, dtype, rng, 1.0, &dout);
    if (decay_on) {
      std::vector<float> sl(s.H);
      kernels::slopes(s.H, sl.data());
      decay = to_double(sl);
    }
    if (with_states) {
      s0 = to_double(to_float(randn(s.B * s.H * s.D * s.E, rng)));
      g = to_double(to_float(randn(s.B * s.H * s.D * s.E, rng)));
    }
    scale = 0.5;
    out = oracle_forward(s, q, k, v, decay, scale, s0);
    grad = oracle_backward(s, q, k, v, decay, scale, s0, dout, g);
  }
};

}  // namespace lightring::test
