#include "csrc/data/sp_slice.h"

#include <algorithm>

#include "core/error.h"

namespace lightring::data {

ShardRange sp_shard_range(int64_t seq_len, int sp_size, int sp_rank) {
  LR_CHECK(sp_size >= 1 && sp_rank >= 0 && sp_rank < sp_size, "sequence-parallel rank ", sp_rank,
           " of ", sp_size, " is out of range");
  LR_CHECK(seq_len >= sp_size, "cannot shard a sequence of ", seq_len, " tokens over ", sp_size,
           " ranks: every rank needs at least one token");
  int64_t base = seq_len / sp_size, extra = seq_len % sp_size;
  ShardRange r;
  r.begin = sp_rank * base + std::min<int64_t>(sp_rank, extra);
  r.end = r.begin + base + (sp_rank < extra ? 1 : 0);
  return r;
}

SequenceShard sp_slice(const Sequence& seq, int sp_size, int sp_rank) {
  const int64_t t = int64_t(seq.input_ids.size());
  const auto& cu = seq.cu_seqlens;
  LR_CHECK(seq.target_ids.size() == size_t(t), "sequence has ", t, " inputs and ",
           seq.target_ids.size(), " targets");
  LR_CHECK(cu.size() >= 2 && cu.front() == 0 && cu.back() == t,
           "cu_seqlens must run from 0 to the sequence length ", t);
  for (size_t i = 0; i + 1 < cu.size(); ++i) {
    LR_CHECK(cu[i] < cu[i + 1], "cu_seqlens must be strictly increasing (", cu[i], " then ",
             cu[i + 1], " at ", i, ")");
  }
  ShardRange r = sp_shard_range(t, sp_size, sp_rank);
  SequenceShard s;
  s.begin = r.begin;
  s.end = r.end;
  s.input_ids.assign(seq.input_ids.begin() + r.begin, seq.input_ids.begin() + r.end);
  s.target_ids.assign(seq.target_ids.begin() + r.begin, seq.target_ids.begin() + r.end);
  s.global_cu_seqlens = cu;
  // The global segment holding position begin: the last boundary <= begin.
  size_t first = size_t(std::upper_bound(cu.begin(), cu.end(), int32_t(r.begin)) - cu.begin()) - 1;
  s.first_segment = int32_t(first);
  s.continues_document = cu[first] < r.begin;
  s.local_cu_seqlens.push_back(0);
  for (size_t i = first + 1; i < cu.size() && cu[i] < r.end; ++i) {
    s.local_cu_seqlens.push_back(int32_t(cu[i] - r.begin));
  }
  s.local_cu_seqlens.push_back(int32_t(r.end - r.begin));
  for (size_t a = 0; a < seq.answer_positions.size(); ++a) {
    int32_t p = seq.answer_positions[a];
    if (p >= r.begin && p < r.end) {
      s.answer_positions.push_back(int32_t(p - r.begin));
      s.answer_key_positions.push_back(seq.answer_key_positions[a]);
    }
  }
  return s;
}

}  // namespace lightring::data
