// synthetic-recall: the documented layout, recomputed from the tokens; determinism;
// train/validation streams; configuration errors; the SP shard of answers.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "csrc/data/dataset.h"
#include "csrc/data/recall.h"
#include "csrc/data/sp_slice.h"
#include "data_test_util.h"

namespace lightring::data {
namespace {

using testing::expect_error;

bool is_key(const RecallConfig& c, int32_t t) {
  return t >= kRecallFirstKey && t < c.first_value();
}
bool is_value(const RecallConfig& c, int32_t t) {
  return t >= c.first_value() && t < int32_t(c.vocab_size());
}

// Checks one sample against the layout of recall.h.
void check_layout(const RecallConfig& c, const Sequence& s) {
  const int64_t t = c.seq_len, qb = t - 2 * int64_t(c.num_queries);
  ASSERT_EQ(s.input_ids.size(), size_t(t));
  ASSERT_EQ(s.input_ids[0], kRecallBos);
  std::map<int32_t, std::pair<int32_t, int32_t>> pairs;  // key -> (position, value)
  for (int64_t p = 1; p < qb; ++p) {
    int32_t tok = s.input_ids[p];
    if (tok == kRecallFiller) continue;
    ASSERT_TRUE(is_key(c, tok)) << "position " << p << " holds " << tok;
    ASSERT_EQ(p % 2, 1) << "keys sit at odd positions";
    ASSERT_LT((p - 1) / 2, int64_t(double((t - 1 - 2 * c.num_queries) / 2) * c.kv_span));
    ASSERT_TRUE(is_value(c, s.input_ids[p + 1]));
    ASSERT_EQ(pairs.count(tok), 0u) << "keys of a sample are distinct";
    pairs[tok] = {int32_t(p), s.input_ids[p + 1]};
    ++p;
  }
  ASSERT_EQ(pairs.size(), size_t(c.num_pairs));
  ASSERT_EQ(s.answer_positions.size(), size_t(c.num_queries));
  std::set<int32_t> queried;
  for (int32_t q = 0; q < c.num_queries; ++q) {
    int32_t p = s.answer_positions[q];
    ASSERT_EQ(p, qb + 2 * q);
    int32_t key = s.input_ids[p];
    ASSERT_EQ(pairs.count(key), 1u) << "query " << q << " repeats no key";
    ASSERT_TRUE(queried.insert(key).second) << "queries are distinct";
    ASSERT_EQ(s.input_ids[p + 1], pairs[key].second);
    ASSERT_EQ(s.target_ids[p], pairs[key].second) << "the answer is the key's value";
    ASSERT_EQ(s.answer_key_positions[q], pairs[key].first);
    ASSERT_EQ(s.key_in_first_half[q], pairs[key].first < t / 2 ? 1 : 0);
  }
  for (int64_t p = 0; p < t; ++p) {
    bool answer = p >= qb && (p - qb) % 2 == 0;
    if (c.loss_on_all_tokens) {
      ASSERT_EQ(s.target_ids[p], p + 1 < t ? s.input_ids[p + 1] : kIgnoreTarget);
    } else if (!answer) {
      ASSERT_EQ(s.target_ids[p], kIgnoreTarget) << "position " << p;
    }
  }
  ASSERT_EQ(s.cu_seqlens, (std::vector<int32_t>{0, int32_t(t)}));
}

TEST(Recall, LayoutVocabAndHalves) {
  RecallConfig c;
  c.seq_len = 301;  // odd
  c.num_keys = 40;
  c.num_values = 23;
  c.num_pairs = 20;
  c.num_queries = 12;
  RecallSource src(c, false);
  EXPECT_EQ(src.vocab_size(), 3u + 40 + 23);
  int first_half = 0, second_half = 0;
  for (uint64_t i = 0; i < 50; ++i) {
    Sequence s;
    src.sequence(0, i, s);
    check_layout(c, s);
    for (uint8_t f : s.key_in_first_half) (f ? first_half : second_half)++;
  }
  // Pairs spread over all pre-query slots: keys land in both halves.
  EXPECT_GT(first_half, 100);
  EXPECT_GT(second_half, 50);

  c.kv_span = 0.25;  // pairs early: every key in the first half, every query in the second
  c.loss_on_all_tokens = true;
  RecallSource early(c, false);
  for (uint64_t i = 0; i < 20; ++i) {
    Sequence s;
    early.sequence(3, i, s);
    check_layout(c, s);
    for (size_t q = 0; q < s.answer_positions.size(); ++q) {
      EXPECT_EQ(s.key_in_first_half[q], 1);
      SequenceShard second = sp_slice(s, 2, 1);
      EXPECT_GE(s.answer_positions[q], second.begin) << "the query is on shard 1 of 2";
    }
    EXPECT_EQ(sp_slice(s, 2, 1).answer_positions.size(), size_t(c.num_queries));
    EXPECT_TRUE(sp_slice(s, 2, 0).answer_positions.empty());
  }
}

TEST(Recall, DeterministicPerSeedEpochIndex) {
  RecallConfig c;
  c.seq_len = 128;
  c.num_pairs = 8;
  c.num_queries = 4;
  c.seed = 11;
  RecallSource a(c, false), b(c, false), val(c, true);
  Sequence x, y;
  a.sequence(2, 17, x);
  b.sequence(2, 17, y);
  EXPECT_EQ(x.input_ids, y.input_ids);
  EXPECT_EQ(x.target_ids, y.target_ids);
  b.sequence(2, 18, y);
  EXPECT_NE(x.input_ids, y.input_ids);
  b.sequence(3, 17, y);
  EXPECT_NE(x.input_ids, y.input_ids);
  val.sequence(2, 17, y);
  EXPECT_NE(x.input_ids, y.input_ids);
  Sequence v0;
  val.sequence(0, 17, v0);
  EXPECT_EQ(v0.input_ids, y.input_ids) << "validation ignores the epoch";
  c.seed = 12;
  RecallSource other(c, false);
  other.sequence(2, 17, y);
  EXPECT_NE(x.input_ids, y.input_ids);
  // A sample pinned down, so that a change of the generator is seen.
  RecallConfig tiny;
  tiny.seq_len = 12;
  tiny.num_keys = 4;
  tiny.num_values = 4;
  tiny.num_pairs = 2;
  tiny.num_queries = 2;
  Sequence t;
  RecallSource(tiny, false).sequence(0, 0, t);
  check_layout(tiny, t);
  EXPECT_EQ(t.input_ids.size(), 12u);
}

TEST(Recall, BadConfigurations) {
  RecallConfig c;
  c.seq_len = 40;
  c.num_pairs = 16;
  c.num_queries = 16;
  expect_error([&] { RecallSource(c, false); }, {"pair slots", "num_pairs = 16"});
  c.seq_len = 1024;
  c.num_queries = 17;
  expect_error([&] { RecallSource(c, false); }, {"num_queries (17)"});
  c.num_queries = 4;
  c.num_pairs = 65;
  expect_error([&] { RecallSource(c, false); }, {"num_pairs (65)", "num_keys = 64"});
  c.num_pairs = 8;
  c.kv_span = 0;
  expect_error([&] { RecallSource(c, false); }, {"kv_span"});
}

TEST(Recall, ThroughOpenDataset) {
  DataOptions o;
  o.seq_len = 256;
  o.seed = 3;
  Dataset ds = open_dataset(o);
  EXPECT_EQ(ds.vocab_size, 3u + 64 + 64);
  ASSERT_NE(ds.validation, nullptr);
  EXPECT_EQ(ds.validation->sequences_per_epoch(), 256u);
  Sequence s;
  ds.train->sequence(0, 0, s);
  RecallConfig c;
  c.seq_len = 256;
  c.seed = 3;
  check_layout(c, s);
}

}  // namespace
}  // namespace lightring::data
