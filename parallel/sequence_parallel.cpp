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

// The reset flags of the scan (ScanSpec::resets) from every rank's document flags.
std::vector<uint8_t> scan_resets(const std::vector<DocumentFlags>& docs, bool reverse) {
  std::vector<uint8_t> resets;
  if (docs.empty() || !docs[0].enabled) return resets;  // agreed: all ranks or none
  for (const DocumentFlags& f : docs)
    resets.push_back(reverse ? backward_reset(f) : forward_reset(f));
  return resets;
}

ScanSpec make_spec(const kernels::Problem& p, const Agreement& agreed, bool reverse) {
  ScanSpec s;
  s.device = p.device;
  s.stream = p.stream;
  s.batch = p.batch;
  s.heads = p.heads;
  s.per_head = p.qk_dim * p.v_dim;
  s.decay = p.decay;  // stays where it is: the combines read it (no host copy, no sync)
  s.lengths = agreed.lengths;
  s.reverse = reverse;
  s.resets = scan_resets(agreed.documents, reverse);
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

// The shard lengths and document flags of the group: the caller's agreed_lengths and
// agreed_documents (this rank's own entries checked, a local error thrown here: every rank passed
// the caller's agreement; the document table is checked as a whole, the same on every rank),
// else the agreement.
Agreement agreed_inputs(comm::Communicator& comm, const LocalInput& in, Call call,
                        const Options& options) {
  if (options.agreed_lengths.empty()) return agree_on_shapes(comm, in, call);
  const int P = comm.size(), r = comm.rank();
  const kernels::Problem& p = *in.problem;
  const std::vector<int64_t>& n = options.agreed_lengths;
  LR_CHECK(static_cast<int>(n.size()) == P, "sequence parallel: agreed_lengths lists ", n.size(),
           " shard lengths for ", P, " ranks");
  LR_CHECK(n[r] == p.seqlen, "sequence parallel: rank ", r, " was agreed with length ", n[r],
           " but its shard has ", p.seqlen);
  Agreement a{n, options.agreed_documents};
  if (a.documents.empty()) {
    LR_CHECK(!p.docs.enabled(), "sequence parallel: rank ", r,
             " passes packed documents (docs) but agreed_documents is empty: a caller that "
             "agrees the inputs itself lists every rank's DocumentFlags");
    a.documents.assign(P, DocumentFlags{});
  }
  LR_CHECK(static_cast<int>(a.documents.size()) == P, "sequence parallel: agreed_documents lists ",
           a.documents.size(), " ranks' document flags for ", P, " ranks");
  const std::string layout = document_layout_errors(a.documents);
  LR_CHECK(layout.empty(),
           "sequence parallel: agreed_documents do not describe one packed stream:", layout);
  const DocumentFlags mine = document_flags(p.docs);
  LR_CHECK(a.documents[r] == mine, "sequence parallel: rank ", r,
           " was agreed with document flags (enabled ", a.documents[r].enabled, ", count ",
           a.documents[r].count, ", continues ", a.documents[r].continues, ", ends ",
           a.documents[r].ends, ") but its docs have (enabled ", mine.enabled, ", count ",
           mine.count, ", continues ", mine.continues, ", ends ", mine.ends, ")");
  LR_CHECK(!(mine.enabled && (in.has_head_state || in.has_tail_state)), "sequence parallel: rank ",
           r, " passed ", in.has_head_state ? "initial_state" : "d_final_state",
           " with packed documents: documents carry per-document states "
           "(doc_initial_states, d_doc_final_states) instead");
  if (!in.error.empty()) throw Error(in.error);
  return a;
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

DocumentFlags document_flags(const kernels::Documents& d) {
  if (!d.enabled()) return DocumentFlags{};
  return DocumentFlags{true, d.count, d.continues, d.ends};
}

namespace {
// The shard these flags describe, for the kernels' definitions of the resets: offsets only
// mark it enabled and are never read.
kernels::Documents flagged_documents(const DocumentFlags& f) {
  static const int64_t kMarker = 0;
  kernels::Documents d;
  d.offsets = f.enabled ? &kMarker : nullptr;
  d.count = f.count;
  d.continues = f.continues;
  d.ends = f.ends;
  return d;
}
}  // namespace

bool forward_reset(const DocumentFlags& f) {
  return kernels::forward_reset(flagged_documents(f));
}
bool backward_reset(const DocumentFlags& f) {
  return kernels::backward_reset(flagged_documents(f));
}

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
  //    With documents, a rank that ends its last document at its last token has no consumer
  //    either (the next rank starts a document there and reads no S_in).
  const bool pair_consumed = r != P - 1 && !(p.docs.enabled() && p.docs.ends);
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
      make_spec(p, agreed_inputs(comm, in, Call::kForward, options), /*reverse=*/false);

  // Fold the global S0 into rank 0's pair: X_0 = a_0·S0 + A_0.
  if (fold && pair_consumed)
    kernels::axpy_decay(p.device, x.data(), fold, p.decay, p.batch, p.heads, spec.per_head,
                        p.seqlen, p.stream);

  // 2. S_in(r) = exclusive prefix.
  const Report rep = exchange(comm, options, spec, p, pair, s_in);
  if (fold) kernels::copy_state(p.device, s_in, fold, kernels::state_count(p), p.stream);
  // A shard that starts a document at its first token reads no S_in: it is 0 there (what the
  // scan left holds the state of the previous document).
  if (p.docs.enabled() && !p.docs.continues)
    kernels::fill_zero(p.device, s_in, kernels::state_count(p), p.stream);

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
  //    With documents, a rank that starts a document at its first token has dS_in = 0 and no
  //    consumer either (the previous rank ends its document there and reads no G).
  const bool pair_consumed = r != 0 && !(p.docs.enabled() && !p.docs.continues);
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
      make_spec(p, agreed_inputs(comm, in, Call::kBackward, options), /*reverse=*/true);

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
