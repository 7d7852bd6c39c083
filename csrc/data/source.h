// Document sources: a corpus seen as a random-access list of documents of token ids.
//
// Every format (text, fortunes, token files, Megatron indexed datasets) opens into a
// DocumentSource; the packer (packing.h) turns one into training sequences. A document
// never contains its end-of-document token: when eos() is set, the packer appends it
// after every document. Sources hold no empty document (they are dropped when opened).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace lightring::data {

using Token = uint32_t;

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  virtual size_t num_documents() const = 0;
  // Tokens of document doc, without the end-of-document token; always >= 1.
  virtual size_t document_length(size_t doc) const = 0;
  // Copies tokens [offset, offset + count) of document doc to out.
  // Requires offset + count <= document_length(doc).
  virtual void read(size_t doc, size_t offset, size_t count, Token* out) const = 0;
  // Every token id (and eos) is < vocab_size().
  virtual uint32_t vocab_size() const = 0;
  // The id the packer appends after each document, if the format has one.
  virtual std::optional<Token> eos() const = 0;
  // What was opened (a path, or a format name), for error messages.
  virtual std::string describe() const = 0;
};

}  // namespace lightring::data
