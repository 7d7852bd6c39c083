// Sequence-parallel slicing of a packed sequence.
//
// Rank k of P holds the contiguous positions [begin_k, end_k) of a sequence of T tokens,
// with the remainder rule of torch.tensor_split (lightring.distributed.shard): the first
// T mod P ranks hold floor(T/P) + 1 tokens, the others floor(T/P). T >= P is required.
//
// Document boundaries are given in both conventions, for the kernels to take either:
//   global_cu_seqlens: the whole sequence's cu_seqlens, the same on every rank (FLA's
//     context-parallel convention); the rank locates itself with [begin, end).
//   local_cu_seqlens: the segments of this shard alone, [0, ..., end - begin], each
//     global segment clipped to the shard; a segment that began on an earlier rank
//     starts at 0 with continues_document set.
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/data/sequence.h"

namespace lightring::data {

struct ShardRange {
  int64_t begin = 0, end = 0;
};

ShardRange sp_shard_range(int64_t seq_len, int sp_size, int sp_rank);

struct SequenceShard {
  int64_t begin = 0, end = 0;
  std::vector<int32_t> input_ids;   // [end - begin]
  std::vector<int32_t> target_ids;  // [end - begin]
  std::vector<int32_t> global_cu_seqlens;
  std::vector<int32_t> local_cu_seqlens;
  // Index into the global segments of local segment 0; local segment i is global segment
  // first_segment + i.
  int32_t first_segment = 0;
  // Local segment 0 started before begin (its state comes from earlier ranks).
  bool continues_document = false;
  // synthetic-recall: answer positions inside the shard, as local positions, and the
  // global position of the key each recalls.
  std::vector<int32_t> answer_positions;
  std::vector<int32_t> answer_key_positions;
};

SequenceShard sp_slice(const Sequence& sequence, int sp_size, int sp_rank);

}  // namespace lightring::data
