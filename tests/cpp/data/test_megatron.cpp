// Megatron-LM indexed datasets: the writer against a hand-built byte array of the
// documented layout, the reader on both, and corrupt files.
#include <gtest/gtest.h>

#include "csrc/data/megatron.h"
#include "data_test_util.h"

namespace lightring::data {
namespace {

using testing::document;
using testing::expect_error;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

std::string le64(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
  return s;
}
std::string le32(uint32_t v) {
  return le64(v).substr(0, 4);
}

// Two documents in uint16 (code 8): [5, 6, 7] as one sequence, [8, 9, 10] as two
// sequences of 1 and 2 tokens. Written out field by field from the layout in
// megatron.h, independently of MegatronWriter.
std::string hand_built_idx() {
  std::string idx("MMIDIDX\0\0", 9);
  idx += le64(1);                      // version
  idx.push_back('\x08');               // dtype code: uint16
  idx += le64(3);                      // sequence count
  idx += le64(3);                      // document indices: documents + 1
  idx += le32(3) + le32(1) + le32(2);  // sequence lengths
  idx += le64(0) + le64(6) + le64(8);  // byte pointers: 2 bytes per token
  idx += le64(0) + le64(1) + le64(3);  // document indices
  return idx;
}
const std::string kHandBuiltBin("\x05\x00\x06\x00\x07\x00\x08\x00\x09\x00\x0a\x00", 12);

TEST(Megatron, WriterMatchesTheDocumentedLayoutByteForByte) {
  TempDir dir;
  MegatronWriter w(dir.file("ds"), MegatronDtype::kUint16);
  w.add_document({5, 6, 7});
  w.add_document({8, 9, 10}, {1, 2});
  w.finalize();
  std::string idx = read_bytes(dir.file("ds.idx"));
  EXPECT_EQ(idx.size(), 34u + 12 * 3 + 8 * 3);
  EXPECT_EQ(idx, hand_built_idx());
  EXPECT_EQ(read_bytes(dir.file("ds.bin")), kHandBuiltBin);
}

TEST(Megatron, ReadsHandBuiltFiles) {
  TempDir dir;
  write_bytes(dir.file("hb.idx"), hand_built_idx());
  write_bytes(dir.file("hb.bin"), kHandBuiltBin);
  for (std::string path : {dir.file("hb"), dir.file("hb.idx"), dir.file("hb.bin")}) {
    MegatronCorpus src(path, {});
    EXPECT_EQ(src.dtype(), MegatronDtype::kUint16);
    EXPECT_EQ(src.num_sequences(), 3u);
    ASSERT_EQ(src.num_documents(), 2u);
    EXPECT_EQ(document(src, 0), (std::vector<Token>{5, 6, 7}));
    EXPECT_EQ(document(src, 1), (std::vector<Token>{8, 9, 10}));
    // A read starting inside the second sequence of a document.
    std::vector<Token> part(1);
    src.read(1, 2, 1, part.data());
    EXPECT_EQ(part[0], 10u);
    EXPECT_EQ(src.vocab_size(), 11u);
    EXPECT_FALSE(src.eos().has_value());
  }
}

TEST(Megatron, RoundTripEveryIntegerDtype) {
  TempDir dir;
  struct Case {
    MegatronDtype dtype;
    int64_t max_token;
  };
  for (Case c : {Case{MegatronDtype::kUint8, 255}, Case{MegatronDtype::kInt8, 127},
                 Case{MegatronDtype::kInt16, 32767}, Case{MegatronDtype::kUint16, 65535},
                 Case{MegatronDtype::kInt32, 1 << 30}, Case{MegatronDtype::kInt64, 1 << 30}}) {
    std::vector<std::vector<int64_t>> docs = {{1, c.max_token, 3}, {}, {c.max_token - 1}, {0, 0}};
    MegatronWriter w(dir.file("rt"), c.dtype);
    for (const auto& d : docs) w.add_document(d);
    w.finalize();
    MegatronOptions o;
    o.eos = 0;
    MegatronCorpus src(dir.file("rt"), o);
    ASSERT_EQ(src.num_documents(), 3u) << "the empty document is dropped";
    std::vector<std::vector<int64_t>> kept = {docs[0], docs[2], docs[3]};
    for (size_t d = 0; d < 3; ++d) {
      std::vector<Token> got = document(src, d);
      ASSERT_EQ(got.size(), kept[d].size());
      for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(int64_t(got[i]), kept[d][i]);
    }
    EXPECT_EQ(src.vocab_size(), uint32_t(c.max_token + 1));
    EXPECT_EQ(src.eos(), std::optional<Token>(0));
  }
}

TEST(Megatron, CorruptFiles) {
  TempDir dir;
  const std::string idx = hand_built_idx();
  auto write = [&](const std::string& i, const std::string& b) {
    write_bytes(dir.file("c.idx"), i);
    write_bytes(dir.file("c.bin"), b);
  };
  auto open = [&] { MegatronCorpus(dir.file("c"), {}); };
  std::string bad = idx;
  bad[0] = 'X';
  write(bad, kHandBuiltBin);
  expect_error(open, {"c.idx", "bad magic"});
  write(idx.substr(0, 20), kHandBuiltBin);
  expect_error(open, {"c.idx", "truncated index"});
  write(idx.substr(0, idx.size() - 1), kHandBuiltBin);
  expect_error(open, {"c.idx", "truncated index"});
  write(idx, kHandBuiltBin.substr(0, 10));
  expect_error(open, {"c.bin", "truncated data file", "sequence 2"});
  bad = idx;
  bad[9] = 2;
  write(bad, kHandBuiltBin);
  expect_error(open, {"c.idx", "version 2"});
  bad = idx;
  bad[17] = 7;
  write(bad, kHandBuiltBin);
  expect_error(open, {"c.idx", "float"});
  bad = idx;
  bad[17] = 9;
  write(bad, kHandBuiltBin);
  expect_error(open, {"c.idx", "unknown dtype code 9"});
  bad = idx;
  bad[idx.size() - 8] = 2;  // last document index 2, not the sequence count 3
  write(bad, kHandBuiltBin);
  expect_error(open, {"c.idx", "last document index is 2"});
  write(idx + "junk", kHandBuiltBin);
  expect_error(open, {"c.idx", "unexpected bytes"});
  write(idx, kHandBuiltBin);
  MegatronOptions o;
  o.vocab_size = 10;
  expect_error([&] { MegatronCorpus(dir.file("c"), o); },
               {"c.bin", "token id 10", ">= the vocabulary size 10"});
  std::filesystem::remove(dir.file("c.bin"));
  expect_error(open, {"not found", "c.bin"});
  MegatronWriter empty(dir.file("e"), MegatronDtype::kUint16);
  empty.add_document({});
  empty.finalize();
  expect_error([&] { MegatronCorpus(dir.file("e"), {}); }, {"empty corpus", "e"});
  MegatronWriter w(dir.file("w"), MegatronDtype::kUint16);
  expect_error([&] { w.add_document({70000}); }, {"70000", "uint16"});
}

}  // namespace
}  // namespace lightring::data
