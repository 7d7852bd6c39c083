// Text, fortunes and token-file sources read back from files written here, and the
// errors of open_dataset for bad inputs.
#include <gtest/gtest.h>

#include <filesystem>

#include "csrc/data/dataset.h"
#include "data_test_util.h"

namespace lightring::data {
namespace {

using testing::bytes_of;
using testing::document;
using testing::expect_error;
using testing::TempDir;
using testing::write_bytes;

std::vector<std::vector<Token>> all_documents(const DocumentSource& s) {
  std::vector<std::vector<Token>> out;
  for (size_t d = 0; d < s.num_documents(); ++d) out.push_back(document(s, d));
  return out;
}

std::vector<std::vector<Token>> docs_of(const std::vector<std::string>& texts) {
  std::vector<std::vector<Token>> out;
  for (const auto& t : texts) out.push_back(bytes_of(t));
  return out;
}

TEST(TextSource, OneDocumentPerFileInPathOrder) {
  TempDir dir;
  write_bytes(dir.file("b.txt"), "second\nfile\n");
  write_bytes(dir.file("a.txt"), "caf\xc3\xa9 first");  // UTF-8 bytes above 127
  write_bytes(dir.file("sub/c.txt"), "nested");
  write_bytes(dir.file("blank.txt"), " \n\t\n");  // dropped: blank
  write_bytes(dir.file(".hidden"), "skipped");
  write_bytes(dir.file(".git/x"), "skipped too");
  auto src = open_text(dir.path(), TextSplit::kFile);
  EXPECT_EQ(src->vocab_size(), 257u);
  EXPECT_EQ(src->eos(), std::optional<Token>(256));
  EXPECT_EQ(all_documents(*src), docs_of({"caf\xc3\xa9 first", "second\nfile\n", "nested"}));
  EXPECT_EQ(document(*src, 0)[3], 0xc3u);
}

TEST(TextSource, BlankLineBlocks) {
  TempDir dir;
  write_bytes(dir.file("t.txt"), "\n\nfirst block\nline two\n\n \r\nsecond\n\n\n\nthird\r\nend");
  auto src = open_text(dir.file("t.txt"), TextSplit::kBlock);
  EXPECT_EQ(all_documents(*src), docs_of({"first block\nline two", "second", "third\r\nend"}));
  // Partial reads return the same bytes as whole reads.
  std::vector<Token> part(3);
  src->read(0, 6, 3, part.data());
  EXPECT_EQ(part, bytes_of("blo"));
}

TEST(FortunesSource, FilesSeparatedByPercentLines) {
  TempDir dir;
  write_bytes(dir.file("wisdom"), "First fortune.\n%\nSecond,\n  two lines.\n%\n%\n\n%\nLast\n");
  write_bytes(dir.file("jokes"), "A joke\n%\n");
  write_bytes(dir.file("jokes.dat"), std::string("\x00\x00\x00\x02", 4));
  write_bytes(dir.file(".hidden"), "no\n%\n");
  std::filesystem::create_symlink("wisdom", dir.file("wisdom.u8"));
  auto src = open_fortunes(dir.path());
  // Name order (jokes, wisdom); the .dat index, the .u8 link and hidden files skipped.
  EXPECT_EQ(all_documents(*src),
            docs_of({"A joke", "First fortune.", "Second,\n  two lines.", "Last"}));
}

TEST(FortunesSource, DebianPackage) {
  if (!std::filesystem::exists(kFortunesDir)) {
    GTEST_SKIP() << kFortunesDir << " missing (Debian package fortunes-min/fortunes)";
  }
  auto src = open_fortunes();
  EXPECT_GT(src->num_documents(), 400u);  // fortunes-min alone holds ~430
  for (size_t d = 0; d < src->num_documents(); ++d) {
    std::vector<Token> doc = document(*src, d);
    ASSERT_FALSE(doc.empty());
    std::string text(doc.begin(), doc.end());
    ASSERT_EQ(text.find("\n%\n"), std::string::npos) << "fortune " << d << " holds a separator";
    ASSERT_NE(text.back(), '\n') << "fortune " << d;
  }
}

TEST(TokenFiles, RawUint16AndUint32SplitOnEos) {
  TempDir dir;
  const std::vector<Token> tokens = {7, 1, 2, 7, 7, 3, 7, 4, 5, 6};
  for (TokenDtype dtype : {TokenDtype::kUint16, TokenDtype::kUint32}) {
    write_token_file(dir.file("raw.bin"), tokens, dtype, false);
    TokenFileOptions o;
    o.dtype = dtype;
    o.eos = 7;
    TokenFileCorpus src(dir.file("raw.bin"), o);
    EXPECT_EQ(all_documents(src), (std::vector<std::vector<Token>>{{1, 2}, {3}, {4, 5, 6}}));
    EXPECT_EQ(src.vocab_size(), 8u);  // inferred: max id + 1
    EXPECT_EQ(src.eos(), std::optional<Token>(7));
  }
}

TEST(TokenFiles, LlmcHeaderBothVersions) {
  TempDir dir;
  const std::vector<Token> tokens = {50256, 10, 11, 50256, 70000 % 65536, 12};
  write_token_file(dir.file("gpt2.bin"), tokens, TokenDtype::kUint16, true);
  std::string bytes = testing::read_bytes(dir.file("gpt2.bin"));
  ASSERT_EQ(bytes.size(), 1024 + 2 * tokens.size());
  EXPECT_EQ(load_le<int32_t>(reinterpret_cast<const uint8_t*>(bytes.data())), 20240520);
  TokenFileOptions o;
  o.dtype = TokenDtype::kUint32;  // ignored: the header says uint16
  o.eos = 50256;
  o.vocab_size = 50257;
  TokenFileCorpus gpt2(dir.file("gpt2.bin"), o);
  EXPECT_EQ(all_documents(gpt2), (std::vector<std::vector<Token>>{{10, 11}, {70000 % 65536, 12}}));
  EXPECT_EQ(gpt2.vocab_size(), 50257u);

  const std::vector<Token> big = {128001, 100000, 5, 128001, 128000};
  write_token_file(dir.file("llama.bin"), big, TokenDtype::kUint32, true);
  o.eos = 128001;
  o.vocab_size = 0;
  TokenFileCorpus llama(dir.file("llama.bin"), o);
  EXPECT_EQ(all_documents(llama), (std::vector<std::vector<Token>>{{100000, 5}, {128000}}));
  EXPECT_EQ(llama.vocab_size(), 128002u);
}

TEST(TokenFiles, FolderOfShardsInNameOrder) {
  TempDir dir;
  write_token_file(dir.file("s_001.bin"), {3, 4, 0}, TokenDtype::kUint16, true);
  write_token_file(dir.file("s_000.bin"), {0, 1, 2}, TokenDtype::kUint16, true);
  write_bytes(dir.file("notes.txt"), "not a shard");
  TokenFileOptions o;
  o.eos = 0;
  TokenFileCorpus src(dir.path(), o);
  EXPECT_EQ(all_documents(src), (std::vector<std::vector<Token>>{{1, 2}, {3, 4}}));
}

TEST(TokenFiles, BadInputs) {
  TempDir dir;
  TokenFileOptions o;
  o.eos = 0;
  write_bytes(dir.file("odd.bin"), std::string("\x01\x00\x02", 3));
  expect_error([&] { TokenFileCorpus(dir.file("odd.bin"), o); }, {"odd.bin", "truncated"});
  // llm.c header announcing more tokens than the file has.
  write_token_file(dir.file("short.bin"), {1, 2, 3, 4}, TokenDtype::kUint16, true);
  std::string b = testing::read_bytes(dir.file("short.bin"));
  write_bytes(dir.file("short.bin"), b.substr(0, b.size() - 2));
  expect_error([&] { TokenFileCorpus(dir.file("short.bin"), o); }, {"short.bin", "truncated"});
  write_token_file(dir.file("big.bin"), {1, 2, 300}, TokenDtype::kUint16, false);
  o.vocab_size = 256;
  expect_error([&] { TokenFileCorpus(dir.file("big.bin"), o); },
               {"big.bin", "token id 300", ">= the vocabulary size 256"});
  o.vocab_size = 0;
  write_token_file(dir.file("eos.bin"), {0, 0, 0}, TokenDtype::kUint16, false);
  expect_error([&] { TokenFileCorpus(dir.file("eos.bin"), o); }, {"empty corpus", "eos.bin"});
  expect_error([&] { TokenFileCorpus(dir.file("missing.bin"), o); }, {"not found", "missing.bin"});
}

TEST(OpenDataset, BadInputs) {
  TempDir dir;
  DataOptions o;
  o.seq_len = 16;
  o.format = "parquet";
  expect_error([&] { open_dataset(o); }, {"unknown data format 'parquet'", "megatron"});
  o.format = "text";
  o.path = dir.file("nope");
  expect_error([&] { open_dataset(o); }, {"not found", dir.file("nope")});
  write_bytes(dir.file("empty/blank.txt"), "\n\n  \n");
  o.path = dir.file("empty");
  expect_error([&] { open_dataset(o); }, {"empty corpus", dir.file("empty")});
  o.format = "fortunes";
  expect_error([&] { open_dataset(o); }, {"empty corpus", dir.file("empty")});
  o.format = "tokens";
  o.path = dir.path();
  expect_error([&] { open_dataset(o); }, {"EOS id"});
  o.format = "megatron";
  o.path = dir.file("corpus");
  expect_error([&] { open_dataset(o); }, {"not found", "corpus.idx"});
  o.format = "text";
  o.path = dir.file("empty/blank.txt");
  o.seq_len = 0;
  expect_error([&] { open_dataset(o); }, {"--seq-len"});
}

TEST(OpenDataset, TextWithValidationSplit) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 40; ++i) text += "block " + std::to_string(i) + "\n\n";
  write_bytes(dir.file("t.txt"), text);
  DataOptions o;
  o.format = "text";
  o.path = dir.file("t.txt");
  o.text_split = TextSplit::kBlock;
  o.seq_len = 8;
  o.validation = {0.1, 0};
  Dataset ds = open_dataset(o);
  ASSERT_NE(ds.validation, nullptr);
  EXPECT_EQ(ds.vocab_size, 257u);
  EXPECT_EQ(ds.documents->num_documents(), 40u);
  auto* train = dynamic_cast<DocumentPacker*>(ds.train.get());
  auto* val = dynamic_cast<DocumentPacker*>(ds.validation.get());
  ASSERT_TRUE(train && val);
  std::vector<uint64_t> t = train->epoch_order(0), v = val->epoch_order(0);
  EXPECT_EQ(v.size(), 4u);
  EXPECT_EQ(t.size(), 36u);
  for (uint64_t d : v) EXPECT_EQ(std::count(t.begin(), t.end(), d), 0) << "document " << d;
  EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));  // validation is not shuffled
}

}  // namespace
}  // namespace lightring::data
