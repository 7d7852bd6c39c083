// Packing invariants against a stream built here from the epoch's document order,
// the validation split, data-parallel sharding, resume, and sequence-parallel slicing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>

#include "csrc/data/loader.h"
#include "csrc/data/packing.h"
#include "csrc/data/rng.h"
#include "csrc/data/sp_slice.h"
#include "data_test_util.h"

namespace lightring::data {
namespace {

using testing::expect_error;
using testing::VectorSource;

bool same(const Sequence& a, const Sequence& b) {
  return a.input_ids == b.input_ids && a.target_ids == b.target_ids &&
         a.cu_seqlens == b.cu_seqlens && a.segment_documents == b.segment_documents;
}

// Documents of lengths 1..60 plus one of 200 (longer than several sequences).
std::shared_ptr<VectorSource> random_source(uint64_t seed, size_t n, std::optional<Token> eos) {
  Rng rng(seed);
  std::vector<std::vector<Token>> docs(n);
  for (size_t d = 0; d < n; ++d) {
    docs[d].resize(d == n / 2 ? 200 : 1 + rng.below(60));
    for (auto& t : docs[d]) t = Token(rng.below(998));  // never the EOS 999
  }
  return std::make_shared<VectorSource>(std::move(docs), 1000, eos);
}

std::vector<uint64_t> iota(size_t n) {
  std::vector<uint64_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Checks every sequence of `epoch` against the stream of documents in epoch order.
void check_epoch(DocumentPacker& packer, const VectorSource& src, uint64_t epoch,
                 const std::vector<uint64_t>& documents) {
  const int64_t t = packer.seq_len();
  std::vector<uint64_t> order = packer.epoch_order(epoch);
  std::vector<uint64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  ASSERT_EQ(sorted, documents) << "epoch order is not a permutation of the documents";

  std::vector<int32_t> stream;
  std::vector<int64_t> doc_at;  // the document of each stream position
  std::set<int64_t> starts;     // stream positions where a document starts
  for (uint64_t d : order) {
    starts.insert(int64_t(stream.size()));
    for (Token tok : src.doc(d)) stream.push_back(int32_t(tok)), doc_at.push_back(int64_t(d));
    if (src.eos()) stream.push_back(int32_t(*src.eos())), doc_at.push_back(int64_t(d));
  }
  const int64_t len = int64_t(stream.size());
  ASSERT_EQ(packer.tokens_per_epoch(), uint64_t(len));
  ASSERT_EQ(packer.sequences_per_epoch(), uint64_t((len + t - 1) / t));
  const int32_t pad = int32_t(src.eos().value_or(0));

  for (uint64_t i = 0; i < packer.sequences_per_epoch(); ++i) {
    Sequence s;
    packer.sequence(epoch, i, s);
    ASSERT_EQ(s.input_ids.size(), size_t(t));
    ASSERT_EQ(s.target_ids.size(), size_t(t));
    std::vector<int32_t> cu{0};
    std::vector<int64_t> segdocs;
    for (int64_t p = 0; p < t; ++p) {
      int64_t g = int64_t(i) * t + p;
      if (g < len) {
        ASSERT_EQ(s.input_ids[p], stream[g]) << "epoch " << epoch << " seq " << i << " pos " << p;
        ASSERT_EQ(s.target_ids[p], g + 1 < len ? stream[g + 1] : kIgnoreTarget);
        if (p > 0 && starts.count(g)) cu.push_back(int32_t(p));
        if (segdocs.size() < cu.size()) segdocs.push_back(doc_at[g]);
      } else {
        ASSERT_EQ(s.input_ids[p], pad);
        ASSERT_EQ(s.target_ids[p], kIgnoreTarget);
        if (g == len) cu.push_back(int32_t(p)), segdocs.push_back(-1);
      }
    }
    cu.push_back(int32_t(t));
    ASSERT_EQ(s.cu_seqlens, cu) << "epoch " << epoch << " seq " << i;
    ASSERT_EQ(s.segment_documents, segdocs);
    for (size_t k = 0; k + 1 < s.cu_seqlens.size(); ++k) {
      ASSERT_LT(s.cu_seqlens[k], s.cu_seqlens[k + 1]);
    }
    // Targets are the inputs shifted by one, across the sequence edge too.
    for (int64_t p = 0; p + 1 < t; ++p) {
      if (s.target_ids[p] != kIgnoreTarget) ASSERT_EQ(s.target_ids[p], s.input_ids[p + 1]);
    }
    if (i + 1 < packer.sequences_per_epoch()) {
      Sequence next;
      packer.sequence(epoch, i + 1, next);
      ASSERT_EQ(s.target_ids[t - 1], next.input_ids[0]);
    }
  }
}

TEST(Packing, EveryTokenOncePerEpochInOrderWithEos) {
  auto src = random_source(1, 61, Token(999));
  for (int64_t t : {1, 7, 37, 64, 5000}) {
    DocumentPacker packer(src, iota(61), {t, 42, true});
    for (uint64_t e : {0, 1, 5}) check_epoch(packer, *src, e, iota(61));
  }
}

TEST(Packing, WithoutEosAndOnASubset) {
  auto src = random_source(2, 50, std::nullopt);
  std::vector<uint64_t> subset = {1, 4, 9, 16, 25, 36, 49};
  DocumentPacker packer(src, subset, {13, 7, true});
  for (uint64_t e : {0, 3}) check_epoch(packer, *src, e, subset);
}

TEST(Packing, ShuffleIsDeterministicPerSeedAndEpoch) {
  auto src = random_source(3, 40, Token(999));
  DocumentPacker a(src, iota(40), {16, 5, true}), b(src, iota(40), {16, 5, true});
  DocumentPacker c(src, iota(40), {16, 6, true}), fixed(src, iota(40), {16, 5, false});
  EXPECT_EQ(a.epoch_order(2), b.epoch_order(2));
  std::vector<uint64_t> e0 = a.epoch_order(0);  // a copy: the reference is to the cache
  EXPECT_NE(e0, a.epoch_order(1));
  EXPECT_NE(e0, c.epoch_order(0));
  EXPECT_EQ(fixed.epoch_order(0), iota(40));
  EXPECT_EQ(fixed.epoch_order(3), iota(40));
  Sequence s1, s2;
  a.sequence(1, 3, s1);
  a.sequence(0, 0, s2);  // another epoch in between: the cache is rebuilt
  b.sequence(1, 3, s2);
  EXPECT_TRUE(same(s1, s2));
}

TEST(Packing, TokenIdAtLeastVocabIsAnError) {
  auto src = std::make_shared<VectorSource>(std::vector<std::vector<Token>>{{1, 2}, {3, 12}}, 10,
                                            Token(0));
  DocumentPacker packer(src, {0, 1}, {8, 0, false});
  Sequence s;
  expect_error([&] { packer.sequence(0, 0, s); },
               {"token id 12", "document 1", ">= the vocabulary size 10"});
  expect_error([&] { DocumentPacker(src, {}, {8, 0, false}); }, {"empty corpus"});
  expect_error([&] { DocumentPacker(src, {0, 2}, {8, 0, false}); }, {"document 2 is out of range"});
}

TEST(Split, ValidationDisjointFromTrainingAndCovering) {
  for (ValidationSpec spec : {ValidationSpec{0.1, 0}, ValidationSpec{0.0, 7}, ValidationSpec{}}) {
    DocumentSplit s = split_documents(101, spec, 9);
    size_t want = spec.count ? spec.count : size_t(std::llround(spec.fraction * 101));
    EXPECT_EQ(s.validation.size(), want);
    std::vector<uint64_t> all = s.train;
    all.insert(all.end(), s.validation.begin(), s.validation.end());
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, iota(101));  // disjoint and covering
  }
  EXPECT_EQ(split_documents(101, {0.1, 0}, 9).validation,
            split_documents(101, {0.1, 0}, 9).validation);
  EXPECT_NE(split_documents(101, {0.1, 0}, 9).validation,
            split_documents(101, {0.1, 0}, 10).validation);
  EXPECT_EQ(split_documents(3, {0.01, 0}, 0).validation.size(), 1u);  // at least one
  expect_error(
      [] {
        split_documents(1, {0.5, 0}, 0, "tiny corpus");
      },
      {"tiny corpus", "none to train on"});
  expect_error([] { split_documents(10, {1.5, 0}, 0); }, {"validation fraction"});
}

TEST(Sharding, RankRTakesSequencesRPlusKD) {
  auto src = random_source(4, 31, Token(999));
  DocumentPacker packer(src, iota(31), {11, 3, true});
  const uint64_t n = packer.sequences_per_epoch();
  ASSERT_NE(n % 3, 0u) << "pick a corpus whose epoch does not divide by D";
  for (int d : {1, 2, 3, 5}) {
    std::vector<ShardedLoader> loaders;
    for (int r = 0; r < d; ++r) loaders.emplace_back(packer, r, d);
    std::vector<int> seen(3 * n, 0);  // global indices over three epochs
    for (uint64_t row = 0; row * d < 2 * n + 5; ++row) {
      for (int r = 0; r < d; ++r) {
        Sequence got, want;
        loaders[r].next(got);
        uint64_t g = row * d + r;
        packer.sequence(g / n, g % n, want);
        ASSERT_TRUE(same(got, want)) << "D " << d << " rank " << r << " row " << row;
        ++seen[g];
      }
      for (int r = 1; r < d; ++r) ASSERT_EQ(loaders[r].position(), loaders[0].position());
    }
    uint64_t rows = (2 * n + 5 + d - 1) / d;
    for (uint64_t g = 0; g < rows * d; ++g) ASSERT_EQ(seen[g], 1) << "global " << g;
  }
  std::vector<uint64_t> covered;
  for (int r = 0; r < 4; ++r) {
    auto v = shard_indices(10, r, 4);
    EXPECT_LE(v.size(), 3u);
    EXPECT_GE(v.size(), 2u);
    covered.insert(covered.end(), v.begin(), v.end());
  }
  std::sort(covered.begin(), covered.end());
  EXPECT_EQ(covered, iota(10));
  expect_error([&] { ShardedLoader(packer, 2, 2); }, {"rank 2 of 2"});
}

TEST(Resume, SavedPositionContinuesExactly) {
  auto src = random_source(5, 25, Token(999));
  auto make = [&] { return std::make_unique<DocumentPacker>(src, iota(25), PackingOptions{9, 8}); };
  auto packer = make();
  const uint64_t n = packer->sequences_per_epoch();
  ShardedLoader loader(*packer, 1, 2);
  // Each batch is 3 rows of D = 2: stop just past the end of epoch 0.
  for (uint64_t k = 0; k < n / 6 + 1; ++k) loader.next_batch(3);
  ASSERT_GT(n, 6u);
  Position saved = loader.position();
  EXPECT_EQ(saved.epoch, 1u);
  std::string json = saved.to_json(), bytes = saved.to_bytes();
  std::vector<Sequence> a;
  for (int k = 0; k < 4; ++k) {
    auto b = loader.next_batch(3);
    a.insert(a.end(), b.begin(), b.end());
  }
  for (const Position& p : {Position::from_json(json), Position::from_bytes(bytes)}) {
    EXPECT_EQ(p, saved);
    auto fresh = make();  // a new process: nothing cached
    ShardedLoader resumed(*fresh, 1, 2, p);
    for (size_t k = 0; k < a.size(); ++k) {
      Sequence s;
      resumed.next(s);
      ASSERT_TRUE(same(s, a[k])) << "sequence " << k << " after resume";
    }
  }
  EXPECT_EQ(Position::from_json(" { \"sequence\" : 12 , \"epoch\": 3 } "), (Position{3, 12}));
  expect_error([] { Position::from_json("{\"epoch\":1}"); }, {"no \"sequence\""});
  expect_error([] { Position::from_json("{\"epoch\":-1,\"sequence\":0}"); }, {"unsigned"});
  expect_error([] { Position::from_bytes("short"); }, {"5 bytes, expected 16"});
  expect_error([&] { ShardedLoader(*packer, 0, 1, Position{0, n}); }, {"past the"});
}

TEST(SpSlice, RangesFollowTensorSplit) {
  // torch.tensor_split(range(10), 4) -> sizes 3, 3, 2, 2.
  std::vector<int64_t> sizes;
  for (int r = 0; r < 4; ++r) {
    ShardRange s = sp_shard_range(10, 4, r);
    sizes.push_back(s.end - s.begin);
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(sp_shard_range(10, 4, 2).begin, 6);
  expect_error([] { sp_shard_range(3, 4, 0); }, {"at least one token"});
  expect_error([] { sp_shard_range(8, 2, 2); }, {"rank 2 of 2"});
}

TEST(SpSlice, BoundariesInBothConventions) {
  auto src = random_source(6, 20, Token(999));
  DocumentPacker packer(src, iota(20), {37, 1, true});
  for (uint64_t i = 0; i < packer.sequences_per_epoch(); ++i) {
    Sequence seq;
    packer.sequence(0, i, seq);
    for (int p : {1, 2, 3, 4, 5, 37}) {
      std::set<int32_t> rebuilt;  // global boundaries from the local ones
      std::vector<int32_t> inputs;
      int64_t expect_begin = 0;
      for (int r = 0; r < p; ++r) {
        SequenceShard s = sp_slice(seq, p, r);
        ASSERT_EQ(s.begin, expect_begin);
        expect_begin = s.end;
        ASSERT_EQ(s.global_cu_seqlens, seq.cu_seqlens);
        const auto& lc = s.local_cu_seqlens;
        ASSERT_EQ(lc.front(), 0);
        ASSERT_EQ(lc.back(), s.end - s.begin);
        for (size_t k = 0; k + 1 < lc.size(); ++k) ASSERT_LT(lc[k], lc[k + 1]);
        // Local segment k is global segment first_segment + k, clipped to the shard.
        for (size_t k = 0; k + 1 < lc.size(); ++k) {
          size_t gseg = size_t(s.first_segment) + k;
          ASSERT_EQ(std::max<int64_t>(seq.cu_seqlens[gseg], s.begin), s.begin + lc[k]);
          ASSERT_EQ(std::min<int64_t>(seq.cu_seqlens[gseg + 1], s.end), s.begin + lc[k + 1]);
        }
        ASSERT_EQ(s.continues_document, seq.cu_seqlens[s.first_segment] < s.begin);
        if (!s.continues_document) rebuilt.insert(int32_t(s.begin));
        for (size_t k = 1; k + 1 < lc.size(); ++k) rebuilt.insert(int32_t(s.begin + lc[k]));
        inputs.insert(inputs.end(), s.input_ids.begin(), s.input_ids.end());
        ASSERT_EQ(s.target_ids.size(), s.input_ids.size());
      }
      ASSERT_EQ(expect_begin, 37);
      ASSERT_EQ(inputs, seq.input_ids);
      rebuilt.insert(37);
      ASSERT_EQ(std::vector<int32_t>(rebuilt.begin(), rebuilt.end()), seq.cu_seqlens);
    }
  }
  Sequence bad;
  bad.input_ids.assign(4, 0);
  bad.target_ids.assign(4, 0);
  bad.cu_seqlens = {0, 2, 2, 4};
  expect_error([&] { sp_slice(bad, 2, 0); }, {"strictly increasing"});
}

}  // namespace
}  // namespace lightring::data
