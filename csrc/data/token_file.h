// Pre-tokenized token files: flat little-endian arrays of uint16 or uint32 token ids, as
// nanoGPT's prepare.py writes them (np.uint16 .bin, no header) or as llm.c writes them
// (a header of 256 int32: [0] magic, [1] version, [2] token count, then the tokens;
// magic 20240520 version 1 = uint16 tokens, magic 20240801 version 7 = uint32 tokens).
//
// A file whose first int32 is one of the llm.c magics is read with that header and its
// dtype (the caller's dtype is then ignored); any other file is raw tokens of the
// caller's dtype. Documents are the runs between EOS ids (the EOS itself is not part of
// a document: the packer puts one back after each document), so llm.c's leading EOT and
// nanoGPT's trailing one give the same documents; empty runs are dropped.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "csrc/data/io.h"
#include "csrc/data/source.h"

namespace lightring::data {

enum class TokenDtype { kUint16, kUint32 };

constexpr int32_t kLlmcMagicGpt2 = 20240520;    // version 1, uint16 tokens
constexpr int32_t kLlmcMagicLlama3 = 20240801;  // version 7, uint32 tokens
constexpr size_t kLlmcHeaderBytes = 256 * sizeof(int32_t);

struct TokenFileOptions {
  TokenDtype dtype = TokenDtype::kUint16;  // of raw files (no llm.c header)
  Token eos = 0;                           // the document separator (required)
  uint32_t vocab_size = 0;                 // 0: max token id + 1 (and > eos)
};

class TokenFileCorpus : public DocumentSource {
 public:
  // path: one file, or a folder whose *.bin files (not descending, name order) are read.
  TokenFileCorpus(const std::string& path, const TokenFileOptions& options);
  size_t num_documents() const override { return docs_.size(); }
  size_t document_length(size_t doc) const override { return docs_[doc].length; }
  void read(size_t doc, size_t offset, size_t count, Token* out) const override;
  uint32_t vocab_size() const override { return vocab_size_; }
  std::optional<Token> eos() const override { return eos_; }
  std::string describe() const override { return description_; }

 private:
  struct File {
    MappedFile map;
    size_t data_offset;  // bytes of header before the first token
    size_t itemsize;     // 2 or 4
    size_t num_tokens;
  };
  struct Doc {
    uint32_t file;
    size_t begin;  // token index in the file
    size_t length;
  };
  void add_file(const std::string& path, TokenDtype dtype);
  Token token(const File& f, size_t i) const {
    const uint8_t* p = f.map.data() + f.data_offset + i * f.itemsize;
    return f.itemsize == 2 ? load_le<uint16_t>(p) : load_le<uint32_t>(p);
  }

  std::string description_;
  std::vector<File> files_;
  std::vector<Doc> docs_;
  Token eos_;
  uint32_t vocab_size_;
};

// Writes tokens as a raw file (header = false) or with an llm.c header (uint16: magic
// 20240520 v1; uint32: 20240801 v7). For tests and conversions.
void write_token_file(const std::string& path, const std::vector<Token>& tokens, TokenDtype dtype,
                      bool llmc_header);

}  // namespace lightring::data
