// The agreement across the ranks of an SP group (see agreement.h).
#include "parallel/agreement.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "parallel/sequence_parallel.h"

namespace lightring::parallel {

namespace {

enum Field {
  kCall,
  kBatch,
  kHeads,
  kQkDim,
  kVDim,
  kDType,
  kDevice,
  kHasDecay,
  kDecayDigest0,
  kDecayDigest1,
  kScaleBits,
  kSchedule,
  kNumShared,
  kSeqlen = kNumShared,
  kLocalOk,
  kHeadState,
  kTailState,
  kDocsEnabled,
  kDocsCount,
  kDocsContinues,
  kDocsEnds,
  kNumFields
};

const char* const kSharedNames[kNumShared] = {
    "call",   "batch (B)",   "heads (H)",    "qk_dim (D)",   "v_dim (E)", "dtype",
    "device", "decay given", "decay values", "decay values", "scale",     "schedule"};

const char* call_name(int64_t v) {
  return v == static_cast<int64_t>(Call::kForward) ? "forward" : "backward";
}

std::string value_str(int field, int64_t v) {
  switch (field) {
    case kCall:
      return call_name(v);
    case kDType:
      return kernels::dtype_name(static_cast<kernels::DType>(v));
    case kDevice:
      return kernels::device_name(static_cast<kernels::Device>(v));
    case kHasDecay:
      return v ? "yes" : "no";
    case kSchedule:
      return schedule_name(static_cast<Schedule>(v));
    case kDecayDigest0:
    case kDecayDigest1: {
      std::ostringstream os;
      os << "digest " << std::hex << static_cast<uint64_t>(v);
      return os.str();
    }
    case kScaleBits: {
      float f;
      const int32_t bits = static_cast<int32_t>(v);
      std::memcpy(&f, &bits, sizeof f);
      std::ostringstream os;
      os << f;
      return os.str();
    }
    default:
      return std::to_string(v);
  }
}

std::string rank_list(const std::vector<int>& ranks) {
  std::ostringstream os;
  for (size_t i = 0; i < ranks.size(); ++i) os << (i ? ", " : "") << ranks[i];
  return os.str();
}

}  // namespace

std::string document_layout_errors(const std::vector<DocumentFlags>& docs) {
  const int P = static_cast<int>(docs.size());
  std::vector<int> with, without;
  for (int g = 0; g < P; ++g) (docs[g].enabled ? with : without).push_back(g);
  if (with.empty()) return "";
  std::ostringstream err;
  if (!without.empty()) {
    err << "\n  packed documents (docs) are given on rank(s) " << rank_list(with)
        << " but not on rank(s) " << rank_list(without)
        << ": every rank passes the local_documents of its shard, or none does";
    return err.str();
  }
  if (docs[0].continues)
    err << "\n  rank 0 continues a document (docs.continues): no document begins before the "
           "first shard";
  if (!docs[P - 1].ends)
    err << "\n  the last rank (" << P - 1
        << ") does not end its last document (docs.ends = false): the stream ends there";
  for (int g = 0; g + 1 < P; ++g)
    if (docs[g].ends == docs[g + 1].continues)
      err << "\n  rank " << g << (docs[g].ends ? " ends" : " does not end")
          << " its last document but rank " << g + 1
          << (docs[g + 1].continues ? " continues one" : " does not continue it")
          << ": each rank's local_documents must come from the same global cu_seqlens";
  return err.str();
}

Agreement agree_on_shapes(comm::Communicator& comm, const LocalInput& in, Call call) {
  const kernels::Problem& p = *in.problem;
  std::string error = in.error;
  kernels::DecayDigest digest = {0, 0};
  if (error.empty()) {
    try {
      digest = kernels::decay_digest(p);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  const bool ok = error.empty();
  int32_t scale_bits;
  std::memcpy(&scale_bits, &p.scale, sizeof scale_bits);
  std::array<int64_t, kNumFields> mine = {static_cast<int64_t>(call),
                                          p.batch,
                                          p.heads,
                                          p.qk_dim,
                                          p.v_dim,
                                          static_cast<int64_t>(p.dtype),
                                          static_cast<int64_t>(p.device),
                                          p.decay != nullptr,
                                          static_cast<int64_t>(digest[0]),
                                          static_cast<int64_t>(digest[1]),
                                          scale_bits,
                                          in.schedule,
                                          p.seqlen,
                                          ok,
                                          in.has_head_state,
                                          in.has_tail_state,
                                          p.docs.enabled(),
                                          p.docs.enabled() ? p.docs.count : 0,
                                          p.docs.enabled() && p.docs.continues,
                                          !p.docs.enabled() || p.docs.ends};
  const int P = comm.size(), me = comm.rank();
  std::vector<int64_t> all(static_cast<size_t>(P) * kNumFields);
  comm.all_gather_host(mine.data(), all.data(), kNumFields);
  auto at = [&](int g, int f) { return all[static_cast<size_t>(g) * kNumFields + f]; };
  const char* what = call_name(static_cast<int64_t>(call));

  // 1. A rank in the other call of the pair: messages of the two would meet.
  for (int g = 0; g < P; ++g) {
    if (at(g, kCall) == at(me, kCall)) continue;
    LR_THROW("sequence-parallel ", what, " over ", P, " ranks (", comm.backend_name(), "): rank ",
             g, " is in its ", call_name(at(g, kCall)), " while rank ", me, " is in its ", what,
             ": every rank must run forward and then backward for every call (a rank skipped a "
             "backward, or ran one more forward)");
  }
  // 2. Ranks whose own input was rejected: every rank reports every message.
  bool all_ok = true;
  for (int g = 0; g < P; ++g) all_ok = all_ok && at(g, kLocalOk);
  if (!all_ok) {
    const std::vector<std::string> messages = comm::all_gather_strings(comm, error);
    std::ostringstream err;
    for (int g = 0; g < P; ++g)
      if (!at(g, kLocalOk)) err << "\n  rank " << g << " rejected its input: " << messages[g];
    LR_THROW("sequence-parallel ", what, " over ", P, " ranks (", comm.backend_name(),
             "): nothing was run:", err.str());
  }
  // 3. Fields every shard must share.
  std::ostringstream err;
  for (int f = 0; f < kNumShared; ++f) {
    if (f == kDecayDigest1) continue;  // compared with kDecayDigest0: one 128-bit digest
    bool same = true;
    for (int g = 1; g < P; ++g) {
      same = same && at(g, f) == at(0, f);
      if (f == kDecayDigest0) same = same && at(g, kDecayDigest1) == at(0, kDecayDigest1);
    }
    if (same) continue;
    err << "\n  " << kSharedNames[f] << (f == kDecayDigest0 ? " differ:" : " differs:");
    for (int g = 0; g < P; ++g) err << " rank " << g << " has " << value_str(f, at(g, f)) << ";";
  }
  // 4. Where the global states may be given.
  for (int g = 1; g < P; ++g)
    if (at(g, kHeadState))
      err << "\n  rank " << g << " passed an initial state: the global S0 is read on SP rank 0 "
          << "only; pass nullptr on the other ranks";
  for (int g = 0; g + 1 < P; ++g)
    if (at(g, kTailState))
      err << "\n  rank " << g << " passed d_final_state: the global G is read on the last SP "
          << "rank (" << P - 1 << ") only; pass nullptr on the other ranks";
  // 5. Packed documents: the same on every rank, a layout one cu_seqlens gives, per-document
  //    states instead of the global ones.
  Agreement a;
  a.lengths.resize(P);
  a.documents.resize(P);
  for (int g = 0; g < P; ++g) {
    a.lengths[g] = at(g, kSeqlen);
    a.documents[g] = DocumentFlags{at(g, kDocsEnabled) != 0, at(g, kDocsCount),
                                   at(g, kDocsContinues) != 0, at(g, kDocsEnds) != 0};
  }
  err << document_layout_errors(a.documents);
  for (int g = 0; g < P; ++g) {
    if (!a.documents[g].enabled) continue;
    if (at(g, kHeadState))
      err << "\n  rank " << g << " passed initial_state with packed documents: each document "
          << "starts from its own state (doc_initial_states), there is no global S0";
    if (at(g, kTailState))
      err << "\n  rank " << g << " passed d_final_state with packed documents: each document "
          << "has its own final-state gradient (d_doc_final_states), there is no global G";
  }
  if (err.tellp() != 0) {
    LR_THROW("sequence-parallel ", what, " over ", P, " ranks (", comm.backend_name(),
             "): the ranks' inputs do not agree (B, H, D, E, dtype, device, decay values, scale "
             "and schedule must match; sequence lengths may differ):",
             err.str());
  }
  return a;
}

}  // namespace lightring::parallel
