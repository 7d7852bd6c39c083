// Sequence-parallel forward and backward (docs/algorithm.md §3; see
// parallel/sequence_parallel.h for the contract).
#include "parallel/sequence_parallel.h"

#include <chrono>
#include <optional>

#include "core/error.h"
#include "kernels/state_ops.h"
#include "parallel/agreement.h"
#include "parallel/exchange.h"

namespace lightring::parallel {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void check_memory_space(const comm::Communicator& comm, const kernels::Problem& p) {
  const bool device = p.device == kernels::Device::kCuda;
  const bool comm_device = comm.memory_space() == comm::MemorySpace::kDevice;
  LR_CHECK(device == comm_device, "the input is on ", kernels::device_name(p.device), " but the ",
           comm.backend_name(), " communicator moves ", comm_device ? "device" : "host",
           " buffers: use MpiCommunicator for Device::kCpu and NcclCommunicator for Device::kCuda");
}

ScanSpec make_spec(const kernels::Problem& p, std::vector<int64_t> lengths, bool reverse) {
  ScanSpec s;
  s.device = p.device;
  s.stream = p.stream;
  s.batch = p.batch;
  s.heads = p.heads;
  s.per_head = p.qk_dim * p.v_dim;
  s.decay = p.decay;  // stays where it is: the combines read it (no host copy, no sync)
  s.lengths = std::move(lengths);
  s.reverse = reverse;
  return s;
}

// The pair this rank sends (step 1): zeros where no rank consumes it, else the pass's local pair,
// copied into *x when the global boundary state `fold` (S0 on rank 0, G on the last rank) is
// to be folded into it after the agreement.
template <typename Pass>
const float* pair_to_send(Pass& pass, bool consumed, const float* fold, const kernels::Problem& p,
                          kernels::StateBuffer* x) {
  if (consumed && !fold) return pass.local_state();
  *x = kernels::StateBuffer(p.device, kernels::state_count(p), p.stream);
  if (consumed) {
    kernels::copy_state(p.device, x->data(), pass.local_state(), kernels::state_count(p), p.stream);
  } else {
    kernels::fill_zero(p.device, x->data(), kernels::state_count(p), p.stream);
  }
  return x->data();
}

// The schedule this rank will run (auto resolved by the cost model), which every rank must share.
int resolved_schedule(const comm::Communicator& comm, const kernels::Problem& p,
                      const Options& options) {
  const size_t bytes = kernels::state_count(p) * sizeof(float);
  return static_cast<int>(choose_schedule(options.schedule, comm.size(), bytes, options.link));
}

// The shard lengths of the group: the caller's agreed_lengths (this rank's own entry checked, a
// local error thrown here: every rank passed the caller's agreement), else the agreement.
std::vector<int64_t> shard_lengths(comm::Communicator& comm, const LocalInput& in, Call call,
                                   const Options& options) {
  if (options.agreed_lengths.empty()) return agree_on_shapes(comm, in, call);
  const std::vector<int64_t>& n = options.agreed_lengths;
  LR_CHECK(static_cast<int>(n.size()) == comm.size(), "sequence parallel: agreed_lengths lists ",
           n.size(), " shard lengths for ", comm.size(), " ranks");
  LR_CHECK(n[comm.rank()] == in.problem->seqlen, "sequence parallel: rank ", comm.rank(),
           " was agreed with length ", n[comm.rank()], " but its shard has ", in.problem->seqlen);
  if (!in.error.empty()) throw Error(in.error);
  return n;
}

// Step 2: the exclusive scan of the pairs into `out`, between the caller's exchange events.
Report exchange(comm::Communicator& comm, const Options& options, const ScanSpec& spec,
                const kernels::Problem& p, const float* pair, float* out) {
  const size_t bytes = kernels::state_count(p) * sizeof(float);
  Report rep;
  rep.schedule = choose_schedule(options.schedule, comm.size(), bytes, options.link);
  rep.message_bytes = bytes;
  const auto t0 = Clock::now();
  kernels::record_event(p.device, options.exchange_begin_event, p.stream);
  rep.messages = exclusive_scan(comm, rep.schedule, spec, pair, out);
  kernels::record_event(p.device, options.exchange_end_event, p.stream);
  rep.exchange_ms = ms_since(t0);
  return rep;
}

}  // namespace

Report forward(comm::Communicator& comm, const kernels::ForwardParams& p, float* s_in,
               const Options& options) {
  const int P = comm.size(), r = comm.rank();
  const bool first = r == 0;

  // 1. Phase 1 of the local pass: everything that does not depend on S_in(r)
  //    (CUDA: the state pass over K and V and the segment combine from zero),
  //    enqueued before any exchange; its local pair A_r is what this rank
  //    sends. A local failure is reported through the agreement, not thrown
  //    here, so that no peer is left waiting. The prefix is exclusive: no rank
  //    consumes the last rank's pair, so that rank contributes zeros (every
  //    schedule only forwards it to positions >= P) and never asks for A (on
  //    backends that compute it on demand, no pass over K and V runs for it).
  const bool pair_consumed = r != P - 1;
  const float* fold = first ? p.initial_state : nullptr;
  LocalInput in{&p, "", p.initial_state != nullptr, false, resolved_schedule(comm, p, options)};
  std::optional<kernels::ForwardPass> pass;
  kernels::StateBuffer x;  // the pair sent, when it is not A_r itself
  const float* pair = nullptr;
  try {
    LR_CHECK(s_in != nullptr, "forward: s_in must point to a [B,H,D,E] fp32 buffer");
    check_memory_space(comm, p);
    pass.emplace(p);
    pair = pair_to_send(*pass, pair_consumed, fold, p, &x);
  } catch (const Error& e) {
    in.error = e.what();
  }
  const ScanSpec spec =
      make_spec(p, shard_lengths(comm, in, Call::kForward, options), /*reverse=*/false);

  // Fold the global S0 into rank 0's pair: X_0 = a_0·S0 + A_0.
  if (fold && pair_consumed)
    kernels::axpy_decay(p.device, x.data(), fold, p.decay, p.batch, p.heads, spec.per_head,
                        p.seqlen, p.stream);

  // 2. S_in(r) = exclusive prefix.
  const Report rep = exchange(comm, options, spec, p, pair, s_in);
  if (fold) kernels::copy_state(p.device, s_in, fold, kernels::state_count(p), p.stream);

  // 3. Phase 2 from S_in(r): the output pass; its final state is S_out(r),
  //    the global final state on the last rank.
  pass->finish(first ? p.initial_state : s_in, p.final_state);
  return rep;
}

Report backward(comm::Communicator& comm, const kernels::BackwardParams& p,
                const Options& options) {
  const int P = comm.size(), r = comm.rank();
  const bool last = r == P - 1;

  // 1. Phase 1 of the local backward: everything that does not depend on
  //    dS_out(r) (CUDA: the S-prefix pass from S_in(r) and dQ; with several
  //    segments the dS state pass over Q, dO and its combine from zero),
  //    enqueued before any exchange; its pair C_r is what this rank sends. The
  //    suffix is exclusive: no rank consumes rank 0's pair (dS0 comes from rank
  //    0's own phase 2), so rank 0 contributes zeros and never asks for C.
  const bool pair_consumed = r != 0;
  const float* fold = last ? p.d_final_state : nullptr;
  LocalInput in{&p, "", false, p.d_final_state != nullptr, resolved_schedule(comm, p, options)};
  std::optional<kernels::BackwardPass> pass;
  kernels::StateBuffer x;  // the pair sent, when it is not C_r itself
  const float* pair = nullptr;
  try {
    check_memory_space(comm, p);
    pass.emplace(p);
    pair = pair_to_send(*pass, pair_consumed, fold, p, &x);
  } catch (const Error& e) {
    in.error = e.what();
  }
  const ScanSpec spec =
      make_spec(p, shard_lengths(comm, in, Call::kBackward, options), /*reverse=*/true);

  // Fold the global G into the last rank's pair: X_{P-1} = a_{P-1}·G + C_{P-1}.
  if (fold && pair_consumed)
    kernels::axpy_decay(p.device, x.data(), fold, p.decay, p.batch, p.heads, spec.per_head,
                        p.seqlen, p.stream);

  // 2. dS_out(r) = exclusive suffix (right to left).
  kernels::StateBuffer ds_out(p.device, kernels::state_count(p), p.stream);
  const Report rep = exchange(comm, options, spec, p, pair, ds_out.data());

  // 3. Phase 2 from dS_out(r): dV and dK; d_initial_state is
  //    dS_in(r) = a_r·dS_out(r) + C_r, the global dS0 on rank 0.
  pass->finish(last ? p.d_final_state : ds_out.data(), p.d_initial_state);
  return rep;
}

}  // namespace lightring::parallel
