// Megatron-LM indexed datasets (megatron/core/datasets/indexed_dataset.py): a data file
// <prefix>.bin holding every sequence's tokens back to back, and an index <prefix>.idx:
//
//   offset  size         field
//   0       9            magic "MMIDIDX\0\0"
//   9       8            version, uint64 = 1
//   17      1            dtype code, uint8 (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64,
//                        6 float64, 7 float32, 8 uint16)
//   18      8            S = sequence count, uint64
//   26      8            C = document-index count, uint64 (documents + 1)
//   34      4*S          sequence lengths, int32 (tokens)
//   34+4S   8*S          sequence pointers, int64 (byte offsets into .bin)
//   34+12S  8*C          document indices, int64: 0 = d_0 <= d_1 <= ... <= d_{C-1} = S;
//                        document k is sequences [d_k, d_{k+1})
//   (34+12S+8C  S        sequence modes, int8, only in multimodal datasets; ignored)
//
// All little-endian. Here a document's tokens are its sequences concatenated (GPT data
// written by preprocess_data.py has one sequence per document). Documents of no token
// are dropped. Integer dtypes only; negative token ids are an error. Megatron writes an
// end-of-document id into the data itself (--append-eod), so by default no EOS is
// added; MegatronOptions::eos adds one after each document.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "csrc/data/io.h"
#include "csrc/data/source.h"

namespace lightring::data {

enum class MegatronDtype : uint8_t {
  kUint8 = 1,
  kInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kFloat64 = 6,
  kFloat32 = 7,
  kUint16 = 8,
};

constexpr char kMegatronMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr size_t kMegatronHeaderBytes = 34;

// Bytes of one element of a dtype code; 0 for an unknown code.
size_t megatron_itemsize(uint8_t code);

struct MegatronOptions {
  std::optional<Token> eos;  // appended after each document when set
  uint32_t vocab_size = 0;   // 0: max token id + 1 (and > eos)
};

class MegatronCorpus : public DocumentSource {
 public:
  // prefix: the path without ".bin"/".idx" (a path ending in either is accepted too).
  MegatronCorpus(const std::string& prefix, const MegatronOptions& options);
  size_t num_documents() const override { return docs_.size(); }
  size_t document_length(size_t doc) const override { return docs_[doc].length; }
  void read(size_t doc, size_t offset, size_t count, Token* out) const override;
  uint32_t vocab_size() const override { return vocab_size_; }
  std::optional<Token> eos() const override { return eos_; }
  std::string describe() const override { return "Megatron dataset " + prefix_; }
  MegatronDtype dtype() const { return dtype_; }
  size_t num_sequences() const { return num_sequences_; }

 private:
  struct Doc {
    size_t first_sequence, end_sequence;
    size_t length;  // tokens
  };
  int32_t sequence_length(size_t s) const;
  int64_t sequence_pointer(size_t s) const;
  int64_t element(size_t byte_offset) const;

  std::string prefix_;
  MappedFile idx_, bin_;
  MegatronDtype dtype_;
  size_t itemsize_ = 0;
  size_t num_sequences_ = 0;
  std::vector<Doc> docs_;
  std::optional<Token> eos_;
  uint32_t vocab_size_ = 0;
};

// Writes <prefix>.bin and <prefix>.idx exactly as Megatron's IndexedDatasetBuilder
// (dtype given, not multimodal): add_document() per document, then finalize(). A
// document may be several sequences (lengths summing to its size); by default one.
class MegatronWriter {
 public:
  MegatronWriter(std::string prefix, MegatronDtype dtype);
  void add_document(const std::vector<int64_t>& tokens);
  void add_document(const std::vector<int64_t>& tokens, const std::vector<int32_t>& lengths);
  void finalize();

 private:
  std::string prefix_;
  MegatronDtype dtype_;
  std::string data_;
  std::vector<int32_t> sequence_lengths_;
  std::vector<int64_t> document_indices_{0};
  bool finalized_ = false;
};

}  // namespace lightring::data
