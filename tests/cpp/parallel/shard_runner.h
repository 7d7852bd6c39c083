// Runs the sequence-parallel forward and backward of this rank's shard of a
// GlobalProblem on the CPU backend and returns its outputs in float64.
#pragma once

#include <vector>

#include "comm/communicator.h"
#include "mpi_fixture.h"
#include "parallel/sequence_parallel.h"

namespace lightring::test {

struct ShardResult {
  std::vector<double> o, dq, dk, dv;
  std::vector<double> final_state;  // last rank: the global final state
  std::vector<double> ds0;          // rank 0: the global dS0
  parallel::Report fwd, bwd;
};

// Oracle values of this rank's rows (o, dq, dk, dv) of a global problem.
struct ShardReference {
  std::vector<double> o, dq, dk, dv;
};

inline ShardReference reference_rows(const GlobalProblem& gp, int64_t t0, int64_t n) {
  const Shape& s = gp.s;
  const int64_t BH = s.B * s.H;
  return {slice_rows(gp.out.o, BH, s.N, s.E, t0, n), slice_rows(gp.grad.dq, BH, s.N, s.D, t0, n),
          slice_rows(gp.grad.dk, BH, s.N, s.D, t0, n), slice_rows(gp.grad.dv, BH, s.N, s.E, t0, n)};
}

inline ShardResult run_shard(comm::Communicator& comm, const GlobalProblem& gp,
                             const std::vector<int64_t>& lengths, parallel::Schedule schedule,
                             DType dtype = DType::kFloat32,
                             const std::vector<int64_t>& agreed_lengths = {}) {
  const Shape& s = gp.s;
  const int r = comm.rank(), P = comm.size();
  const auto off = offsets_of(lengths);
  const int64_t n = lengths[r], BH = s.B * s.H, SE = s.B * s.H * s.D * s.E;
  HostTensor q = HostTensor::from_double(slice_rows(gp.q, BH, s.N, s.D, off[r], n), dtype);
  HostTensor k = HostTensor::from_double(slice_rows(gp.k, BH, s.N, s.D, off[r], n), dtype);
  HostTensor v = HostTensor::from_double(slice_rows(gp.v, BH, s.N, s.E, off[r], n), dtype);
  HostTensor d_o = HostTensor::from_double(slice_rows(gp.dout, BH, s.N, s.E, off[r], n), dtype);
  HostTensor o(dtype, BH * n * s.E), dq(dtype, BH * n * s.D), dk(dtype, BH * n * s.D),
      dv(dtype, BH * n * s.E);
  for (HostTensor* t : {&o, &dq, &dk, &dv}) t->poison();
  const std::vector<float> decay = to_float(gp.decay), s0 = to_float(gp.s0), g = to_float(gp.g);
  std::vector<float> s_in(SE, NAN), final_state(SE, NAN), ds_in(SE, NAN);

  kernels::ForwardParams fp;
  fp.dtype = dtype;
  fp.batch = s.B;
  fp.heads = s.H;
  fp.seqlen = n;
  fp.qk_dim = s.D;
  fp.v_dim = s.E;
  fp.decay = gp.decay_on ? decay.data() : nullptr;
  fp.scale = static_cast<float>(gp.scale);
  fp.q = q.data();
  fp.k = k.data();
  fp.v = v.data();
  fp.o = o.data();
  fp.q_stride = fp.k_stride = kernels::contiguous_bhnd(s.H, n, s.D);
  fp.v_stride = fp.o_stride = kernels::contiguous_bhnd(s.H, n, s.E);
  fp.initial_state = (r == 0 && gp.with_states) ? s0.data() : nullptr;
  fp.final_state = final_state.data();
  parallel::Options opt;
  opt.schedule = schedule;
  opt.agreed_lengths = agreed_lengths;

  ShardResult res;
  res.fwd = parallel::forward(comm, fp, s_in.data(), opt);

  kernels::BackwardParams bp =
      kernels::backward_params(fp, d_o.data(), dq.data(), dk.data(), dv.data());
  bp.initial_state = s_in.data();
  bp.d_final_state = (r == P - 1 && gp.with_states) ? g.data() : nullptr;
  bp.d_initial_state = ds_in.data();
  res.bwd = parallel::backward(comm, bp, opt);

  res.o = o.to_double();
  res.dq = dq.to_double();
  res.dk = dk.to_double();
  res.dv = dv.to_double();
  if (r == P - 1) res.final_state = to_double(final_state);
  if (r == 0) res.ds0 = to_double(ds_in);
  return res;
}

// EXPECTs every output of this rank against the float64 oracle of the whole sequence.
inline void expect_matches_oracle(const GlobalProblem& gp, const std::vector<int64_t>& lengths,
                                  int rank, const ShardResult& res, double tol) {
  const auto off = offsets_of(lengths);
  const ShardReference ref = reference_rows(gp, off[rank], lengths[rank]);
  EXPECT_LE(rel_err(res.o, ref.o), tol) << "output o, rank " << rank;
  EXPECT_LE(rel_err(res.dq, ref.dq), tol) << "dq, rank " << rank;
  EXPECT_LE(rel_err(res.dk, ref.dk), tol) << "dk, rank " << rank;
  EXPECT_LE(rel_err(res.dv, ref.dv), tol) << "dv, rank " << rank;
  if (rank == static_cast<int>(lengths.size()) - 1)
    EXPECT_LE(rel_err(res.final_state, gp.out.final_state), tol) << "final state, last rank";
  if (rank == 0) EXPECT_LE(rel_err(res.ds0, gp.grad.ds0), tol) << "dS0, rank 0";
}

}  // namespace lightring::test
