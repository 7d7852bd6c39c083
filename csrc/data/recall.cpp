#include "csrc/data/recall.h"

#include <algorithm>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "csrc/data/rng.h"

namespace lightring::data {
namespace {

int64_t pair_slots(const RecallConfig& c) {
  int64_t s = (c.seq_len - 1 - 2 * int64_t(c.num_queries)) / 2;
  return std::max<int64_t>(0, int64_t(double(s) * c.kv_span));
}

// k distinct values of [0, n), in random order (Floyd's sampling, then a shuffle).
std::vector<int64_t> sample_distinct(int64_t n, int64_t k, Rng& rng) {
  std::unordered_set<int64_t> seen;
  std::vector<int64_t> picked;
  picked.reserve(size_t(k));
  for (int64_t j = n - k; j < n; ++j) {
    int64_t v = int64_t(rng.below(uint64_t(j) + 1));
    if (!seen.insert(v).second) {
      v = j;
      seen.insert(v);
    }
    picked.push_back(v);
  }
  shuffle(picked, rng);
  return picked;
}

}  // namespace

void validate(const RecallConfig& c) {
  LR_CHECK(c.num_keys >= 1 && c.num_values >= 1, "synthetic-recall: num_keys (", c.num_keys,
           ") and num_values (", c.num_values, ") must be >= 1");
  LR_CHECK(c.num_pairs >= 1 && c.num_pairs <= c.num_keys, "synthetic-recall: num_pairs (",
           c.num_pairs, ") must be in [1, num_keys = ", c.num_keys, "]");
  LR_CHECK(c.num_queries >= 1 && c.num_queries <= c.num_pairs, "synthetic-recall: num_queries (",
           c.num_queries, ") must be in [1, num_pairs = ", c.num_pairs, "]");
  LR_CHECK(c.kv_span > 0.0 && c.kv_span <= 1.0, "synthetic-recall: kv_span (", c.kv_span,
           ") must be in (0, 1]");
  LR_CHECK(c.seq_len < (int64_t(1) << 31), "synthetic-recall: seq_len ", c.seq_len,
           " does not fit int32 positions");
  LR_CHECK(pair_slots(c) >= c.num_pairs, "synthetic-recall: seq_len ", c.seq_len, " holds ",
           pair_slots(c), " pair slots before ", c.num_queries, " queries (kv_span ", c.kv_span,
           "), fewer than num_pairs = ", c.num_pairs);
}

void make_recall_sequence(const RecallConfig& c, uint64_t stream_seed, int64_t sample_id,
                          Sequence& out) {
  const int64_t t = c.seq_len;
  Rng rng(stream_seed);
  std::vector<int64_t> slots = sample_distinct(pair_slots(c), c.num_pairs, rng);
  std::vector<int64_t> keys = sample_distinct(c.num_keys, c.num_pairs, rng);
  std::vector<int32_t> values(size_t(c.num_pairs));
  for (auto& v : values) v = int32_t(rng.below(uint64_t(c.num_values)));
  std::vector<int64_t> queried = sample_distinct(c.num_pairs, c.num_queries, rng);

  out = Sequence{};
  out.input_ids.assign(size_t(t), kRecallFiller);
  out.input_ids[0] = kRecallBos;
  for (int32_t j = 0; j < c.num_pairs; ++j) {
    int64_t p = 1 + 2 * slots[size_t(j)];
    out.input_ids[size_t(p)] = kRecallFirstKey + int32_t(keys[size_t(j)]);
    out.input_ids[size_t(p) + 1] = c.first_value() + values[size_t(j)];
  }
  const int64_t query_begin = t - 2 * int64_t(c.num_queries);
  for (int32_t q = 0; q < c.num_queries; ++q) {
    size_t j = size_t(queried[size_t(q)]);
    int64_t p = query_begin + 2 * q;
    out.input_ids[size_t(p)] = kRecallFirstKey + int32_t(keys[j]);
    out.input_ids[size_t(p) + 1] = c.first_value() + values[j];
    int64_t key_pos = 1 + 2 * slots[j];
    out.answer_positions.push_back(int32_t(p));
    out.answer_key_positions.push_back(int32_t(key_pos));
    out.key_in_first_half.push_back(key_pos < t / 2 ? 1 : 0);
  }
  out.target_ids.assign(size_t(t), kIgnoreTarget);
  if (c.loss_on_all_tokens) {
    for (int64_t p = 0; p + 1 < t; ++p) out.target_ids[size_t(p)] = out.input_ids[size_t(p) + 1];
  } else {
    for (int32_t p : out.answer_positions) out.target_ids[size_t(p)] = out.input_ids[size_t(p) + 1];
  }
  out.cu_seqlens = {0, int32_t(t)};
  out.segment_documents = {sample_id};
}

RecallSource::RecallSource(const RecallConfig& config, bool validation)
    : config_(config), validation_(validation) {
  validate(config_);
  LR_CHECK(sequences_per_epoch() >= 1,
           "synthetic-recall: ", validation ? "num_validation" : "sequences_per_epoch",
           " must be >= 1");
}

void RecallSource::sequence(uint64_t epoch, uint64_t index, Sequence& out) {
  LR_CHECK(index < sequences_per_epoch(), "synthetic-recall: sequence ", index,
           " is out of range (", sequences_per_epoch(), " per epoch)");
  uint64_t seed = validation_
                      ? mix_seed(config_.seed, uint64_t(Stream::kRecallValid), index)
                      : mix_seed(config_.seed, uint64_t(Stream::kRecallTrain), epoch, index);
  uint64_t id = validation_ ? index : epoch * config_.sequences_per_epoch + index;
  make_recall_sequence(config_, seed, int64_t(id), out);
}

}  // namespace lightring::data
