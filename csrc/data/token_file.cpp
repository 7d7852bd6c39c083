#include "csrc/data/token_file.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace lightring::data {
namespace fs = std::filesystem;

TokenFileCorpus::TokenFileCorpus(const std::string& path, const TokenFileOptions& options)
    : description_("token files " + path), eos_(options.eos) {
  require_exists(path, "token file");
  std::vector<std::string> paths;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file() && entry.path().extension() == ".bin") {
        paths.push_back(entry.path().string());
      }
    }
    std::sort(paths.begin(), paths.end());
    LR_CHECK(!paths.empty(), "empty corpus: no *.bin token file in ", path);
  } else {
    paths.push_back(path);
  }
  for (const auto& p : paths) add_file(p, options.dtype);

  // One pass over every token: document boundaries and the largest id.
  Token max_id = eos_;
  size_t max_at_file = 0, max_at = 0;
  for (uint32_t fi = 0; fi < files_.size(); ++fi) {
    const File& f = files_[fi];
    size_t begin = 0;
    for (size_t i = 0; i < f.num_tokens; ++i) {
      Token t = token(f, i);
      if (t > max_id) {
        max_id = t;
        max_at_file = fi;
        max_at = i;
      }
      if (t == eos_) {
        if (i > begin) docs_.push_back({fi, begin, i - begin});
        begin = i + 1;
      }
    }
    if (f.num_tokens > begin) docs_.push_back({fi, begin, f.num_tokens - begin});
  }
  LR_CHECK(!docs_.empty(), "empty corpus: ", path, " holds no token other than the EOS id ", eos_);
  if (options.vocab_size == 0) {
    vocab_size_ = max_id + 1;
  } else {
    vocab_size_ = options.vocab_size;
    LR_CHECK(max_id < vocab_size_, files_[max_at_file].map.path(), ": token id ", max_id,
             " at token ", max_at, " is >= the vocabulary size ", vocab_size_,
             max_id == eos_ ? " (the EOS id)" : "");
  }
}

void TokenFileCorpus::add_file(const std::string& path, TokenDtype dtype) {
  File f{MappedFile(path), 0, dtype == TokenDtype::kUint16 ? 2u : 4u, 0};
  size_t size = f.map.size();
  int32_t magic = size >= 4 ? load_le<int32_t>(f.map.data()) : 0;
  if (magic == kLlmcMagicGpt2 || magic == kLlmcMagicLlama3) {
    LR_CHECK(size >= kLlmcHeaderBytes, path, ": truncated llm.c header (", size, " bytes, need ",
             kLlmcHeaderBytes, ")");
    int32_t version = load_le<int32_t>(f.map.data() + 4);
    int32_t count = load_le<int32_t>(f.map.data() + 8);
    int32_t want = magic == kLlmcMagicGpt2 ? 1 : 7;
    LR_CHECK(version == want, path, ": llm.c header with magic ", magic, " has version ", version,
             ", expected ", want);
    LR_CHECK(count >= 0, path, ": llm.c header gives a negative token count ", count);
    f.itemsize = magic == kLlmcMagicGpt2 ? 2 : 4;
    f.data_offset = kLlmcHeaderBytes;
    f.num_tokens = static_cast<size_t>(count);
    size_t expect = kLlmcHeaderBytes + f.num_tokens * f.itemsize;
    LR_CHECK(size >= expect, path, ": truncated: the llm.c header announces ", count, " tokens (",
             expect, " bytes) but the file has ", size, " bytes");
    LR_CHECK(size == expect, path, ": ", size - expect, " bytes after the ", count,
             " tokens the llm.c header announces");
  } else {
    LR_CHECK(size % f.itemsize == 0, path, ": truncated: ", size,
             " bytes is not a whole number of ", f.itemsize == 2 ? "uint16" : "uint32", " tokens");
    f.num_tokens = size / f.itemsize;
  }
  files_.push_back(std::move(f));
}

void TokenFileCorpus::read(size_t doc, size_t offset, size_t count, Token* out) const {
  const Doc& d = docs_[doc];
  const File& f = files_[d.file];
  for (size_t i = 0; i < count; ++i) out[i] = token(f, d.begin + offset + i);
}

void write_token_file(const std::string& path, const std::vector<Token>& tokens, TokenDtype dtype,
                      bool llmc_header) {
  std::string bytes;
  if (llmc_header) {
    LR_CHECK(tokens.size() < (1ull << 31), path, ": llm.c files hold fewer than 2^31 tokens");
    std::vector<int32_t> header(256, 0);
    header[0] = dtype == TokenDtype::kUint16 ? kLlmcMagicGpt2 : kLlmcMagicLlama3;
    header[1] = dtype == TokenDtype::kUint16 ? 1 : 7;
    header[2] = static_cast<int32_t>(tokens.size());
    for (int32_t h : header) append_le(bytes, h);
  }
  for (Token t : tokens) {
    if (dtype == TokenDtype::kUint16) {
      LR_CHECK(t <= 0xffff, path, ": token id ", t, " does not fit uint16");
      append_le(bytes, static_cast<uint16_t>(t));
    } else {
      append_le(bytes, t);
    }
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  LR_CHECK(out.good(), "cannot create ", path);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  LR_CHECK(out.good(), "cannot write ", path);
}

}  // namespace lightring::data
