// Sequence-parallel passes over pre-agreed inputs (see sp_passes.h).
#include "csrc/sp_passes.h"

#include <optional>

#include "core/error.h"
#include "kernels/state_ops.h"
#include "parallel/exchange.h"

namespace lightring::csrc {

namespace {

void check_agreed(const comm::Communicator& comm, const kernels::Problem& p,
                  parallel::Schedule schedule, const std::vector<int64_t>& lengths) {
  LR_CHECK(schedule != parallel::Schedule::kAuto, "sequence-parallel pass: resolve 'auto' first");
  LR_CHECK(static_cast<int>(lengths.size()) == comm.size(),
           "sequence-parallel pass: lengths must list one shard length per rank (got ",
           lengths.size(), " for ", comm.size(), " ranks)");
  LR_CHECK(lengths[comm.rank()] == p.seqlen, "sequence-parallel pass: rank ", comm.rank(),
           " was agreed with length ", lengths[comm.rank()], " but its shard has ", p.seqlen);
  const bool device = p.device == kernels::Device::kCuda;
  LR_CHECK(device == (comm.memory_space() == comm::MemorySpace::kDevice), "the input is on ",
           kernels::device_name(p.device), " but the ", comm.backend_name(),
           " communicator moves other buffers");
}

parallel::ScanSpec spec_of(const kernels::Problem& p, const std::vector<int64_t>& lengths,
                           bool reverse) {
  parallel::ScanSpec s;
  s.device = p.device;
  s.stream = p.stream;
  s.batch = p.batch;
  s.heads = p.heads;
  s.per_head = p.qk_dim * p.v_dim;
  s.decay = p.decay;
  s.lengths = lengths;
  s.reverse = reverse;
  return s;
}

// The pair this rank sends: zeros where no rank consumes it; the pass's local pair,
// with the boundary state `fold` (S0 on rank 0, G on the last rank) folded in as
// X = λ^len·fold + pair when given.
template <typename Pass>
const float* pair_to_send(Pass& pass, bool consumed, const float* fold, const kernels::Problem& p,
                          kernels::StateBuffer* x) {
  if (consumed && !fold) return pass.local_state();
  const size_t count = kernels::state_count(p);
  *x = kernels::StateBuffer(p.device, count, p.stream);
  if (!consumed) {
    kernels::fill_zero(p.device, x->data(), count, p.stream);
    return x->data();
  }
  kernels::copy_state(p.device, x->data(), pass.local_state(), count, p.stream);
  kernels::axpy_decay(p.device, x->data(), fold, p.decay, p.batch, p.heads, p.qk_dim * p.v_dim,
                      p.seqlen, p.stream);
  return x->data();
}

}  // namespace

void sp_forward_agreed(comm::Communicator& comm, const kernels::ForwardParams& p, float* s_in,
                       parallel::Schedule schedule, const std::vector<int64_t>& lengths) {
  check_agreed(comm, p, schedule, lengths);
  LR_CHECK(s_in != nullptr, "forward: s_in must point to a [B,H,D,E] fp32 buffer");
  const int P = comm.size(), r = comm.rank();
  const bool first = r == 0;
  const float* fold = first ? p.initial_state : nullptr;
  kernels::ForwardPass pass(p);  // phase 1: independent of S_in(r), before any wait
  kernels::StateBuffer x;
  const float* pair = pair_to_send(pass, r != P - 1, fold, p, &x);
  parallel::exclusive_scan(comm, schedule, spec_of(p, lengths, /*reverse=*/false), pair, s_in);
  if (fold) kernels::copy_state(p.device, s_in, fold, kernels::state_count(p), p.stream);
  pass.finish(first ? p.initial_state : s_in, p.final_state);
}

void sp_backward_agreed(comm::Communicator& comm, const kernels::BackwardParams& p,
                        parallel::Schedule schedule, const std::vector<int64_t>& lengths) {
  check_agreed(comm, p, schedule, lengths);
  const int P = comm.size(), r = comm.rank();
  const bool last = r == P - 1;
  const float* fold = last ? p.d_final_state : nullptr;
  kernels::BackwardPass pass(p);  // phase 1: independent of dS_out(r)
  kernels::StateBuffer x;
  const float* pair = pair_to_send(pass, r != 0, fold, p, &x);
  kernels::StateBuffer ds_out(p.device, kernels::state_count(p), p.stream);
  parallel::exclusive_scan(comm, schedule, spec_of(p, lengths, /*reverse=*/true), pair,
                           ds_out.data());
  pass.finish(last ? p.d_final_state : ds_out.data(), p.d_initial_state);
}

}  // namespace lightring::csrc
