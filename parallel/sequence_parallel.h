// Sequence-parallel Lightning Attention-2 over the ranks of one SP group
// (docs/algorithm.md §3): each rank holds one contiguous shard of the sequence,
// shard r on SP rank r; only fixed-size [B,H,D,E] fp32 states cross ranks.
//
// Forward on rank r (n_r = its local length, a_r = λ^{n_r} per head), with
// the two-phase kernels::ForwardPass / BackwardPass so that each rank enqueues
// everything independent of its peers before the exchange and reads no input
// twice (kernels/attention.h):
//   1. phase 1: pass = ForwardPass(q, k, v); A_r = pass.local_state()   (no waiting on any peer)
//   2. S_in(r) = X-part of S0 ⊕ (a_0,A_0) ⊕ … ⊕ (a_{r-1},A_{r-1})   (the exchange)
//      with (a1,X1) ⊕ (a2,X2) = (a1·a2, a2·X1 + X2), per (b,h), a per-head scalar
//   3. phase 2: pass.finish(S_in(r)) writes o (and S_out(r))
// Backward, the mirror image (right to left):
//   1. phase 1: pass = BackwardPass(q, k, v, dO, S_in(r)) (dQ, and on CUDA the
//      dS state pass); C_r = pass.local_state()
//   2. dS_out(r) = a_{r+1}·dS_out(r+1) + C_{r+1}, seeded by dS_out(P-1) = G
//   3. phase 2: pass.finish(dS_out(r)) writes dK, dV and dS_in(r) = a_r·dS_out(r) + C_r,
//      on rank 0 the global dS0.
//
// What backward needs from forward: the inputs and S_in(r) only, one
// [B,H,D,E] fp32 state per layer (O(H·D·E), independent of any length).
//
// Schedules (all give the same states up to fp32 rounding):
//   ring       P-1 dependent hops of one state message (rank r-1 -> r)
//   allgather  one all-gather of every rank's state; each rank folds the prefix
//   scan       recursive doubling: ceil(log2 P) rounds of one message each way
//   auto       the cheapest by the cost model below (docs/schedules.md)
// The scalar parts a_g never travel: every rank knows every n_g from the shape
// all-gather and computes λ^{Σ n_g} itself.
//
// Global states: the initial state S0 is read on SP rank 0 only, the final
// state (forward) and its gradient G (backward) live on the last SP rank.
//
// Packed documents (docs/algorithm.md §5, kernels/documents.h): p.docs describes the
// document pieces of THIS rank's shard. Convention: every rank holds the GLOBAL cu_seqlens of
// the stream (FLA's way) and passes its own kernels::local_documents(cu, num_docs, start_r,
// n_r).view(), with start_r = n_0 + … + n_{r-1}; the per-document states are then the slices
// [first_r, first_r + count_r) of the [N_docs,H,D,E] arrays. Every rank passes documents or
// none does; B = 1; rank 0 does not continue a document, the last rank ends one, and rank r
// ends its last document exactly when rank r+1 does not continue it (what local_documents
// gives for one cu_seqlens). The global initial_state (S0) and d_final_state (G) are rejected
// with documents: each document carries its own states instead, which stay on the rank that
// holds the document's first or last token:
//   doc_initial_states  read on the rank where the document starts (its piece with
//                       starts_document), gradients d_doc_initial_states written there
//   doc_final_states    written on the rank where the document ends (ends_document),
//                       its gradient d_doc_final_states read there
// A document spanning ranks r..s has its state carried through the exchange: a rank whose
// shard contains a document start has the pair scalar 0 (kernels::forward_reset) and passes
// on only what follows its last start; backward mirrors it (kernels::backward_reset). The
// flags of every rank travel in the agreement record, so a layout that breaks any rule above
// throws the same lightring::Error on every rank before any exchange.
//
// Shards may have different lengths (each rank passes its own seqlen >= 1);
// B, H, D, E, dtype, device and the decay presence must agree. Every call first
// all-gathers a small shape record; any mismatch throws lightring::Error with
// the same message on every rank of the group (never a hang).
//
// Device: p.device == kCpu needs a host communicator (MpiCommunicator), kCuda
// a device one (NcclCommunicator); states then live in device memory and the
// combine runs as a tiny CUDA kernel on p.stream (kernels/state_ops.h).
// On CUDA a call synchronises the host twice, briefly, both before the
// exchange: the decay check of the local pass (a copy of [H] rates in phase 1,
// kernels/cuda/attention.cu) and the shape agreement (a blocking all-gather of
// a few int64 on the communicator's stream, which does not wait for the
// compute stream, so phase 1 of the local pass runs meanwhile).
// The combine scalars λ^len are computed on the device from the decay rates
// and the host-known lengths. The exchange and both local passes are
// stream-ordered; peers' deadlines are enforced in that wait and in
// Communicator::synchronize().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "kernels/attention.h"

namespace lightring::parallel {

enum class Schedule { kRing, kAllGather, kScan, kAuto };

// "ring", "allgather" (also "all-gather", "all_gather"), "scan", "auto"; throws otherwise.
Schedule parse_schedule(const std::string& name);
const char* schedule_name(Schedule s);

// Cost model of one exchange (forward or backward), in microseconds, for P
// ranks and a state message of m = B·H·D·E·4 bytes (docs/schedules.md,
// docs/scaling.md). One level (all ranks behind one kind of link):
//
//   ring       (P-1)·(α + m/β + m/γ)                 P-1 dependent hops, one combine each
//   allgather  α·ceil(log2 P) + (P-1)·m/β + (P-1)·m/γ one collective, then a local fold
//   scan       ceil(log2 P)·(α + m/β + 2·m/γ)        doubling rounds, two combines each
//
// α = per-message latency (µs), β = link bandwidth (bytes/µs), γ = combine
// bandwidth (bytes/µs, the axpy over a state).
//
// Two levels (α_e, β_e the links between nodes). A group of P consecutive ranks spans `nodes`
// nodes and `crossings` of its P-1 neighbouring pairs (r, r+1) sit on two different nodes:
//
//   ring       (P-1-crossings)·(α + m/β + m/γ) + crossings·(α_e + m/β_e + m/γ)
//   allgather  α_e·ceil(log2 P) + (P-1)·m/β_e + (P-1)·m/γ      (the slowest link paces the ring)
//   scan       ceil(log2 P)·(α_e + m/β_e + 2·m/γ)              (every round has a pair across
//   nodes)
//
// The placement comes from `span` when it is known (parallel/topology.h measures it from the
// host names of the group's ranks), else from ranks_per_node = R > 0 with P > R as aligned
// blocks: nodes = ⌈P/R⌉, crossings = nodes - 1 (SP groups are consecutive ranks, comm/layout.h,
// so a node holds R neighbouring shards). nodes = 1: the one-level formulas.
//
// auto picks the cheapest; P <= 2 is always ring (a single hop); ties go to
// ring, then scan.
struct GroupSpan {
  int nodes = 0;      // nodes the group's ranks run on; 0: unknown (use ranks_per_node)
  int crossings = 0;  // pairs (r, r+1) of the group on two different nodes: the ring's slow hops
};

struct LinkModel {
  double latency_us = 5.0;         // α: NVLink/NCCL small-message latency; MPI shared memory ~1-2
  double bandwidth_Bpus = 50e3;    // β: 50 GB/s = 50e3 bytes/µs
  double combine_Bpus = 200e3;     // γ: on-device axpy; ~5e3 for the host loop
  int ranks_per_node = 0;          // R: 0 = one level (every rank behind α, β)
  double inter_latency_us = 10.0;  // α_e between nodes
  double inter_bandwidth_Bpus = 50e3;  // β_e: 400 Gb/s = 50e3 bytes/µs
  GroupSpan span;                      // the group's measured placement; overrides R when nodes > 0
};

// The placement the cost model prices for a group of num_ranks (span, else R, above).
GroupSpan effective_span(int num_ranks, const LinkModel& link);

double schedule_cost_us(Schedule s, int num_ranks, size_t bytes, const LinkModel& link = {});
// Resolves kAuto by the cost model; returns any other schedule unchanged.
Schedule choose_schedule(Schedule requested, int num_ranks, size_t bytes,
                         const LinkModel& link = {});

// Why auto picks what it picks: the three costs, the placement priced and one line of reason,
// e.g. "the cheapest for 2097152 B; 4 ranks on 2 nodes, 1 of 3 ring hops between nodes".
struct ScheduleChoice {
  Schedule schedule = Schedule::kRing;  // requested, or auto resolved
  double ring_us = 0, allgather_us = 0, scan_us = 0;
  GroupSpan span;  // effective_span: nodes >= 1
  std::string reason;
};
ScheduleChoice explain_schedule(Schedule requested, int num_ranks, size_t bytes,
                                const LinkModel& link = {});

// The packed-document flags of one rank's shard (kernels::Documents without its offsets): what
// the exchange needs of every rank and the agreement compares.
struct DocumentFlags {
  bool enabled = false;    // the rank passed documents (p.docs.enabled())
  int64_t count = 0;       // pieces in the shard (0 without documents)
  bool continues = false;  // piece 0 continues a document begun on an earlier rank
  bool ends = true;        // the last piece ends its document at the shard's last token

  bool operator==(const DocumentFlags& o) const {
    return enabled == o.enabled && count == o.count && continues == o.continues && ends == o.ends;
  }
};
DocumentFlags document_flags(const kernels::Documents& d);
// kernels::forward_reset / backward_reset of the shard these flags describe.
bool forward_reset(const DocumentFlags& f);
bool backward_reset(const DocumentFlags& f);

struct Options {
  Schedule schedule = Schedule::kAuto;
  LinkModel link;
  // Benchmarks (CUDA only; ignored on the CPU): two cudaEvent_t, recorded on
  // p.stream just before the exchange step (2) is enqueued and right after its
  // result is ready on p.stream. Their elapsed time is the exchange span seen
  // by the compute stream (the time it stalls between phase 1 and phase 2 of
  // the local pass). nullptr: not recorded.
  void* exchange_begin_event = nullptr;
  void* exchange_end_event = nullptr;
  // The shard length of every rank of the group, when the caller already agreed the inputs of
  // this call on every rank (Python's agreement: lightring/agreement.py): the call then runs no
  // agreement of its own and checks only this rank's entry. Empty: the call agrees (above).
  // The schedule must then resolve the same on every rank (kAuto does: the cost model sees
  // only P, the state size and the link).
  std::vector<int64_t> agreed_lengths;
  // With agreed_lengths and packed documents: every rank's DocumentFlags in rank order (the
  // caller agreed them too); this rank's entry is checked against p.docs and the table against
  // the rules above (the same error on every rank, the table being the same). Empty: no rank
  // has documents (a rank that passes p.docs then throws).
  std::vector<DocumentFlags> agreed_documents;
};

// What one call did, for benchmarks and logs.
struct Report {
  Schedule schedule = Schedule::kRing;  // the schedule that ran (kAuto resolved)
  int messages = 0;                     // state messages this rank sent
  size_t message_bytes = 0;             // bytes of one state message (B·H·D·E·4)
  double exchange_ms = 0.0;             // host wall time of the exchange step (2)
};

// Sequence-parallel forward of the local shard. `p` describes this rank's
// shard exactly as kernels::forward would (same validation), with:
//   p.initial_state  global S0, read on SP rank 0 only (nullptr there: zero);
//                    must be nullptr on every other rank
//   p.final_state    on the last rank the global final state; elsewhere, when
//                    not null, this shard's S_out (nullptr to skip)
//   s_in             out, [B,H,D,E] fp32 in p.device memory: S_in(r), the only
//                    thing backward needs besides the inputs (S0 or 0 on rank 0;
//                    with documents 0 unless p.docs.continues)
//   with p.docs      initial_state must be nullptr; doc_initial_states / doc_final_states
//                    are this rank's pieces' slices (above); final_state is S_out(r)
Report forward(comm::Communicator& sp_group, const kernels::ForwardParams& p, float* s_in,
               const Options& options = {});

// Sequence-parallel backward of the local shard:
//   p.initial_state    S_in(r) written by forward (may be nullptr only when
//                      forward's S_in was zero, i.e. rank 0 without S0)
//   p.d_final_state    global G, read on the last SP rank only (nullptr: zero);
//                      must be nullptr on every other rank
//   p.d_initial_state  on rank 0 the global dS0; elsewhere, when not null, dS_in(r)
//   with p.docs        d_final_state must be nullptr; doc_initial_states,
//                      d_doc_final_states and d_doc_initial_states are this rank's
//                      pieces' slices; d_initial_state is 0 unless p.docs.continues
Report backward(comm::Communicator& sp_group, const kernels::BackwardParams& p,
                const Options& options = {});

}  // namespace lightring::parallel
