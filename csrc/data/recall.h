// synthetic-recall: multi-query associative recall (MQAR, Arora et al. 2023, "Zoology"),
// generated on the fly, no files. Each sequence is one sample of T tokens:
//
//   position  0                       kRecallBos
//   pairs     N key/value pairs at pair slots 1 + 2j (key) and 2 + 2j (value), for N
//             distinct slots j drawn from the first floor(kv_span * S) of the
//             S = (T - 1 - 2Q) / 2 slots before the queries
//   queries   the last 2Q positions: T - 2Q + 2q holds a key of one of the pairs (Q
//             distinct pairs, random order), T - 2Q + 2q + 1 its value
//   elsewhere kRecallFiller
//
// Token ids: 0 kRecallPad (unused), 1 kRecallBos, 2 kRecallFiller, keys
// [3, 3 + num_keys), values [3 + num_keys, 3 + num_keys + num_values);
// vocab = 3 + num_keys + num_values. Keys of a sample are distinct; values are drawn
// with replacement. The answer positions are the query keys: the target there is the
// value of that key; every other target is kIgnoreTarget (or the next token when
// loss_on_all_tokens). One segment per sequence (cu_seqlens = [0, T]).
//
// Sample (epoch e, index i) of training draws from (seed, e, i); validation sample i
// from a separate stream of (seed, i), so the two never share a generator state.
#pragma once

#include <cstdint>

#include "csrc/data/sequence.h"

namespace lightring::data {

constexpr int32_t kRecallPad = 0;
constexpr int32_t kRecallBos = 1;
constexpr int32_t kRecallFiller = 2;
constexpr int32_t kRecallFirstKey = 3;

struct RecallConfig {
  int64_t seq_len = 1024;    // T
  int32_t num_keys = 64;     // key vocabulary
  int32_t num_values = 64;   // value vocabulary
  int32_t num_pairs = 16;    // N per sample
  int32_t num_queries = 16;  // Q per sample, <= N
  double kv_span = 1.0;      // fraction of the pre-query slots that may hold a pair, (0, 1]
  uint64_t seed = 0;
  uint64_t sequences_per_epoch = 1 << 16;
  uint64_t num_validation = 256;
  bool loss_on_all_tokens = false;

  uint32_t vocab_size() const { return uint32_t(3 + num_keys + num_values); }
  int32_t first_value() const { return kRecallFirstKey + num_keys; }
};

// Throws naming the field when the configuration cannot produce a sample.
void validate(const RecallConfig& config);

// One sample, a pure function of (config, stream seed).
void make_recall_sequence(const RecallConfig& config, uint64_t stream_seed, int64_t sample_id,
                          Sequence& out);

class RecallSource : public SequenceSource {
 public:
  // validation: the held-out stream (num_validation samples, the epoch is ignored).
  RecallSource(const RecallConfig& config, bool validation);
  int64_t seq_len() const override { return config_.seq_len; }
  uint64_t sequences_per_epoch() const override {
    return validation_ ? config_.num_validation : config_.sequences_per_epoch;
  }
  uint32_t vocab_size() const override { return config_.vocab_size(); }
  void sequence(uint64_t epoch, uint64_t index, Sequence& out) override;

 private:
  RecallConfig config_;
  bool validation_;
};

}  // namespace lightring::data
