// Byte-level text sources: every byte is a token (0..255), kByteEos = 256 ends a document,
// so the vocabulary is kByteVocab = 257. No tokenizer, no normalisation: the bytes of the
// files are the tokens (UTF-8 text becomes its UTF-8 bytes).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "csrc/data/source.h"

namespace lightring::data {

constexpr Token kByteEos = 256;
constexpr uint32_t kByteVocab = 257;

// Where Debian's fortunes, fortunes-min (and fortune-mod) packages put their files.
constexpr const char* kFortunesDir = "/usr/share/games/fortunes";

// Documents held in memory as one byte string and document offsets.
class ByteCorpus : public DocumentSource {
 public:
  ByteCorpus(std::string description, std::string bytes, std::vector<size_t> offsets);
  size_t num_documents() const override { return offsets_.size() - 1; }
  size_t document_length(size_t doc) const override { return offsets_[doc + 1] - offsets_[doc]; }
  void read(size_t doc, size_t offset, size_t count, Token* out) const override;
  uint32_t vocab_size() const override { return kByteVocab; }
  std::optional<Token> eos() const override { return kByteEos; }
  std::string describe() const override { return description_; }

 private:
  std::string description_;
  std::string bytes_;
  std::vector<size_t> offsets_;  // [num_documents + 1], document d is [offsets[d], offsets[d+1])
};

// Fortune files: the regular files of dir (not descending), in name order, skipping
// *.dat (strfile's index), symbolic links (Debian's *.u8 -> * duplicates) and hidden
// files. A file is a list of fortunes separated by lines holding only "%"; one
// document per fortune: its lines joined by '\n', trailing whitespace (the newlines
// before the "%") removed. Fortunes of nothing but whitespace are dropped.
std::unique_ptr<ByteCorpus> open_fortunes(const std::string& dir = kFortunesDir);

// The fortunes of one file's bytes (exposed for tests); appended to bytes/offsets.
void split_fortunes(const std::string& text, std::string& bytes, std::vector<size_t>& offsets);

enum class TextSplit {
  kFile,   // one document per file: its bytes as they are
  kBlock,  // one document per blank-line-separated block (a blank line holds only
           // spaces, tabs and '\r'); a block's lines are joined by '\n'
};

// A text file, or a folder of them (searched recursively, files in path order, hidden
// files and directories skipped). Empty documents are dropped.
std::unique_ptr<ByteCorpus> open_text(const std::string& path, TextSplit split);

// The blocks of one file's bytes (exposed for tests); appended to bytes/offsets.
void split_blocks(const std::string& text, std::string& bytes, std::vector<size_t>& offsets);

}  // namespace lightring::data
