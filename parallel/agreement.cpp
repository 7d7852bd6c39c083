// Shape agreement across the ranks of an SP group (see agreement.h).
#include "parallel/agreement.h"

#include <array>
#include <cstring>
#include <sstream>

#include "kernels/error.h"

namespace lightring::parallel {

namespace {

enum Field {
  kBatch,
  kHeads,
  kQkDim,
  kVDim,
  kDType,
  kDevice,
  kHasDecay,
  kScaleBits,
  kNumShared,
  kSeqlen = kNumShared,
  kLocalOk,
  kHeadState,
  kTailState,
  kNumFields
};

const char* const kSharedNames[kNumShared] = {"batch (B)", "heads (H)", "qk_dim (D)",  "v_dim (E)",
                                              "dtype",     "device",    "decay given", "scale"};

std::string value_str(int field, int64_t v) {
  switch (field) {
    case kDType:
      return kernels::dtype_name(static_cast<kernels::DType>(v));
    case kDevice:
      return kernels::device_name(static_cast<kernels::Device>(v));
    case kHasDecay:
      return v ? "yes" : "no";
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

}  // namespace

std::vector<int64_t> agree_on_shapes(comm::Communicator& comm, const LocalInput& in,
                                     const char* what) {
  const kernels::Problem& p = *in.problem;
  const bool ok = in.error.empty();
  int32_t scale_bits;
  std::memcpy(&scale_bits, &p.scale, sizeof scale_bits);
  std::array<int64_t, kNumFields> mine = {p.batch,
                                          p.heads,
                                          p.qk_dim,
                                          p.v_dim,
                                          static_cast<int64_t>(p.dtype),
                                          static_cast<int64_t>(p.device),
                                          p.decay != nullptr,
                                          scale_bits,
                                          p.seqlen,
                                          ok,
                                          in.has_head_state,
                                          in.has_tail_state};
  const int P = comm.size(), me = comm.rank();
  std::vector<int64_t> all(static_cast<size_t>(P) * kNumFields);
  comm.all_gather_host(mine.data(), all.data(), kNumFields);
  auto at = [&](int g, int f) { return all[static_cast<size_t>(g) * kNumFields + f]; };

  std::ostringstream err;
  // 1. Ranks whose own input was rejected.
  for (int g = 0; g < P; ++g) {
    if (at(g, kLocalOk)) continue;
    err << "\n  rank " << g << " rejected its local input"
        << (g == me ? ": " + in.error : " (see the error on that rank)");
  }
  // 2. Fields every shard must share (only meaningful between valid ranks).
  if (err.tellp() == 0) {
    for (int f = 0; f < kNumShared; ++f) {
      bool same = true;
      for (int g = 1; g < P; ++g) same = same && at(g, f) == at(0, f);
      if (same) continue;
      err << "\n  " << kSharedNames[f] << " differs:";
      for (int g = 0; g < P; ++g) err << " rank " << g << " has " << value_str(f, at(g, f)) << ";";
    }
    // 3. Where the global states may be given.
    for (int g = 1; g < P; ++g)
      if (at(g, kHeadState))
        err << "\n  rank " << g << " passed an initial state: the global S0 is read on SP rank 0 "
            << "only; pass nullptr on the other ranks";
    for (int g = 0; g + 1 < P; ++g)
      if (at(g, kTailState))
        err << "\n  rank " << g << " passed d_final_state: the global G is read on the last SP "
            << "rank (" << P - 1 << ") only; pass nullptr on the other ranks";
  }
  if (err.tellp() != 0) {
    LR_THROW("sequence-parallel ", what, " over ", P, " ranks (", comm.backend_name(),
             "): the ranks' inputs do not agree (B, H, D, E, dtype, device, decay and scale must "
             "match; sequence lengths may differ):",
             err.str());
  }
  std::vector<int64_t> lengths(P);
  for (int g = 0; g < P; ++g) lengths[g] = at(g, kSeqlen);
  return lengths;
}

}  // namespace lightring::parallel
