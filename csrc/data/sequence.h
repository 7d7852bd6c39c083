// A training sequence and the interface every sequence producer implements.
#pragma once

#include <cstdint>
#include <vector>

namespace lightring::data {

// Target id of a position that has no next token to predict (the end of the corpus,
// padding, or a non-answer position of synthetic-recall); cross-entropy's ignore_index.
constexpr int32_t kIgnoreTarget = -1;

// One sequence of T tokens (T = seq_len of its source).
struct Sequence {
  std::vector<int32_t> input_ids;   // [T]
  std::vector<int32_t> target_ids;  // [T], the next token, or kIgnoreTarget
  // Segment boundaries in the FlashAttention convention: [0, c_1, ..., T], int32,
  // strictly increasing; segment i is positions [cu_seqlens[i], cu_seqlens[i+1]).
  std::vector<int32_t> cu_seqlens;
  // The source document of each segment (index into the DocumentSource; for
  // synthetic-recall the sample's index); -1 for a padding segment.
  std::vector<int64_t> segment_documents;
  // synthetic-recall only (empty otherwise): the positions whose target is an answer,
  // the position of the key each answer recalls, and whether that key is in the first
  // half of the sequence (key position < T / 2).
  std::vector<int32_t> answer_positions;
  std::vector<int32_t> answer_key_positions;
  std::vector<uint8_t> key_in_first_half;
};

// Produces the sequences of an epoch by index. Epochs all have the same number of
// sequences; sequence(e, i) is a pure function of (e, i) and the source's configuration.
// Not thread-safe (implementations cache per-epoch state).
class SequenceSource {
 public:
  virtual ~SequenceSource() = default;
  virtual int64_t seq_len() const = 0;
  virtual uint64_t sequences_per_epoch() const = 0;
  virtual uint32_t vocab_size() const = 0;
  virtual void sequence(uint64_t epoch, uint64_t index, Sequence& out) = 0;
};

}  // namespace lightring::data
