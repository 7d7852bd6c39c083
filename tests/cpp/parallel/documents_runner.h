// Packed documents under sequence parallel (parallel/sequence_parallel.h): one global packed
// stream (B = 1, identical on every rank, from one seed) cut into documents by a global
// cu_seqlens and into shards by rank; each rank runs parallel::forward / backward on its shard
// with its local_documents and its slices of the per-document states, and returns its outputs
// in float64, next to the per-document float64 oracle (testing/documents_oracle.h).
#pragma once

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "comm/communicator.h"
#include "mpi_fixture.h"
#include "parallel/sequence_parallel.h"
#include "testing/documents_oracle.h"

namespace lightring::test {

// The global stream: document offsets, shard lengths, inputs and the oracle.
struct DocsProblem {
  Shape s;                       // B = 1, N = T
  std::vector<int64_t> cu;       // N_docs + 1 global offsets
  std::vector<int64_t> lengths;  // shard length of every rank
  bool with_states = false;      // per-document S0 and G
  double scale = 0.5;
  DType dtype = DType::kFloat32;
  std::vector<double> q, k, v, dout, decay, s0, g;
  DocumentsOut out;
  DocumentsGrad grad;

  int64_t num_docs() const { return static_cast<int64_t>(cu.size()) - 1; }
  int64_t per_doc() const { return s.H * s.D * s.E; }

  DocsProblem(int64_t H, int64_t D, int64_t E, std::vector<int64_t> cu_seqlens,
              std::vector<int64_t> shard_lengths, bool states, uint64_t seed, DType dt)
      : cu(std::move(cu_seqlens)),
        lengths(std::move(shard_lengths)),
        with_states(states),
        dtype(dt) {
    s = Shape{1, H, cu.back(), D, E};
    std::mt19937_64 rng(seed);
    random_tensor(H * s.N * D, dtype, rng, 1.0, &q);
    random_tensor(H * s.N * D, dtype, rng, 1.0, &k);
    random_tensor(H * s.N * E, dtype, rng, 1.0, &v);
    random_tensor(H * s.N * E, dtype, rng, 1.0, &dout);
    std::vector<float> sl(H);
    kernels::slopes(H, sl.data());
    decay = to_double(sl);
    if (with_states) {
      s0 = to_double(to_float(randn(num_docs() * per_doc(), rng)));
      g = to_double(to_float(randn(num_docs() * per_doc(), rng)));
    }
    out = documents_forward(s, cu, q, k, v, decay, scale, s0);
    grad = documents_backward(s, cu, q, k, v, decay, scale, s0, dout, g);
  }
};

struct DocsShardResult {
  kernels::LocalDocuments local;
  std::vector<double> o, dq, dk, dv;
  std::vector<double> s_in, ds_in;         // S_in(r) and dS_in(r)
  std::vector<double> finals, d_initials;  // [count,H,D,E]; NaN where not written
  parallel::Report fwd, bwd;
};

// Hooks that break the inputs for the error tests, applied just before each call; `state` is
// a [1,H,D,E] fp32 buffer a hook may pass as a global state.
struct DocsHooks {
  std::function<void(kernels::ForwardParams&, parallel::Options&, float* state)> forward;
  std::function<void(kernels::BackwardParams&, parallel::Options&, float* state)> backward;
};

inline DocsShardResult run_docs_shard(comm::Communicator& comm, const DocsProblem& pr,
                                      parallel::Schedule schedule, const DocsHooks& hooks = {}) {
  const Shape& s = pr.s;
  const int r = comm.rank();
  const auto off = offsets_of(pr.lengths);
  const int64_t n = pr.lengths[r], H = s.H, per = pr.per_doc();
  const DType dt = pr.dtype;
  DocsShardResult res;
  res.local = kernels::local_documents(pr.cu.data(), pr.num_docs(), off[r], n);
  const int64_t count = static_cast<int64_t>(res.local.offsets.size()) - 1;
  HostTensor q = HostTensor::from_double(take_rows(pr.q, H, s.N, s.D, off[r], n), dt);
  HostTensor k = HostTensor::from_double(take_rows(pr.k, H, s.N, s.D, off[r], n), dt);
  HostTensor v = HostTensor::from_double(take_rows(pr.v, H, s.N, s.E, off[r], n), dt);
  HostTensor d_o = HostTensor::from_double(take_rows(pr.dout, H, s.N, s.E, off[r], n), dt);
  HostTensor o(dt, H * n * s.E), dq(dt, H * n * s.D), dk(dt, H * n * s.D), dv(dt, H * n * s.E);
  for (HostTensor* t : {&o, &dq, &dk, &dv}) t->poison();
  const std::vector<float> decay = to_float(pr.decay), s0 = to_float(pr.s0), g = to_float(pr.g);
  std::vector<float> s_in(per, NAN), s_out(per, NAN), ds_in(per, NAN);
  std::vector<float> finals(count * per, NAN), d_initials(count * per, NAN);
  // Global states for the error tests that pass them (never read on a valid call).
  std::vector<float> global_state(per, 1.0f);

  kernels::ForwardParams fp;
  fp.dtype = dt;
  fp.batch = 1;
  fp.heads = H;
  fp.seqlen = n;
  fp.qk_dim = s.D;
  fp.v_dim = s.E;
  fp.decay = decay.data();
  fp.scale = static_cast<float>(pr.scale);
  fp.q = q.data();
  fp.k = k.data();
  fp.v = v.data();
  fp.o = o.data();
  fp.q_stride = fp.k_stride = kernels::contiguous_bhnd(H, n, s.D);
  fp.v_stride = fp.o_stride = kernels::contiguous_bhnd(H, n, s.E);
  fp.final_state = s_out.data();
  fp.docs = res.local.view();
  fp.doc_initial_states = pr.with_states ? s0.data() + res.local.first * per : nullptr;
  fp.doc_final_states = finals.data();
  parallel::Options opt;
  opt.schedule = schedule;
  if (hooks.forward) hooks.forward(fp, opt, global_state.data());
  res.fwd = parallel::forward(comm, fp, s_in.data(), opt);

  kernels::BackwardParams bp =
      kernels::backward_params(fp, d_o.data(), dq.data(), dk.data(), dv.data());
  bp.initial_state = s_in.data();
  bp.doc_initial_states = fp.doc_initial_states;
  bp.d_doc_final_states = pr.with_states ? g.data() + res.local.first * per : nullptr;
  bp.d_doc_initial_states = d_initials.data();
  bp.d_initial_state = ds_in.data();
  if (hooks.backward) hooks.backward(bp, opt, global_state.data());
  res.bwd = parallel::backward(comm, bp, opt);

  res.o = o.to_double();
  res.dq = dq.to_double();
  res.dk = dk.to_double();
  res.dv = dv.to_double();
  res.s_in = to_double(s_in);
  res.ds_in = to_double(ds_in);
  res.finals = to_double(finals);
  res.d_initials = to_double(d_initials);
  return res;
}

// EXPECTs this rank's outputs against the oracle: o, dq, dk, dv rows; the final state of every
// document that ends here and the initial-state gradient of every document that starts here;
// S_in and dS_in exactly 0 where the shard starts a document at its first token.
inline void expect_docs_match(const DocsProblem& pr, int rank, const DocsShardResult& res,
                              double tol) {
  const Shape& s = pr.s;
  const auto off = offsets_of(pr.lengths);
  const int64_t n = pr.lengths[rank], H = s.H, per = pr.per_doc();
  EXPECT_LE(rel_err(res.o, take_rows(pr.out.o, H, s.N, s.E, off[rank], n)), tol) << "o";
  EXPECT_LE(rel_err(res.dq, take_rows(pr.grad.dq, H, s.N, s.D, off[rank], n)), tol) << "dq";
  EXPECT_LE(rel_err(res.dk, take_rows(pr.grad.dk, H, s.N, s.D, off[rank], n)), tol) << "dk";
  EXPECT_LE(rel_err(res.dv, take_rows(pr.grad.dv, H, s.N, s.E, off[rank], n)), tol) << "dv";
  const kernels::Documents d = res.local.view();
  for (int64_t i = 0; i < d.count; ++i) {
    const int64_t doc = res.local.first + i;
    const std::vector<double> fin(res.finals.begin() + i * per, res.finals.begin() + (i + 1) * per);
    const std::vector<double> dini(res.d_initials.begin() + i * per,
                                   res.d_initials.begin() + (i + 1) * per);
    if (d.ends_document(i))
      EXPECT_LE(rel_err(fin, doc_state(pr.out.final_states, per, doc)), tol)
          << "final state of document " << doc;
    if (d.starts_document(i) && pr.with_states)
      EXPECT_LE(rel_err(dini, doc_state(pr.grad.d_initial_states, per, doc)), tol)
          << "d_initial_state of document " << doc;
  }
  if (!d.continues) {
    for (double x : res.s_in) ASSERT_EQ(x, 0.0) << "S_in where the shard starts a document";
    for (double x : res.ds_in) ASSERT_EQ(x, 0.0) << "dS_in where the shard starts a document";
  }
}

}  // namespace lightring::test
