// One entry point for lightring-train's --data / --data-path: a format name and its
// options give the training and validation sequence sources.
//
//   synthetic-recall  generated (recall.h), no path
//   fortunes          Debian's fortune files (text.h), path = their directory
//                     (default /usr/share/games/fortunes)
//   text              text file or folder, byte-level (text.h), text_split
//   tokens            uint16/uint32 token files, nanoGPT or llm.c (token_file.h)
//   megatron          <prefix>.bin + <prefix>.idx (megatron.h)
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "csrc/data/megatron.h"
#include "csrc/data/packing.h"
#include "csrc/data/recall.h"
#include "csrc/data/text.h"
#include "csrc/data/token_file.h"

namespace lightring::data {

struct DataOptions {
  std::string format = "synthetic-recall";
  std::string path;                    // empty: the format's default (fortunes) or none
  int64_t seq_len = 0;                 // global T of a training sequence
  uint64_t seed = 0;                   // shuffle, split and synthetic samples
  ValidationSpec validation{0.01, 0};  // documents held out (document formats)
  TextSplit text_split = TextSplit::kFile;
  TokenDtype token_dtype = TokenDtype::kUint16;  // raw token files
  std::optional<Token> eos;  // tokens: the separator (required); megatron: appended if set
  uint32_t vocab_size = 0;   // tokens/megatron: 0 infers max id + 1
  RecallConfig recall;       // synthetic-recall (its seq_len and seed are set from above)
};

struct Dataset {
  std::unique_ptr<SequenceSource> train;
  std::unique_ptr<SequenceSource> validation;       // null when nothing is held out
  std::shared_ptr<const DocumentSource> documents;  // null for synthetic-recall
  uint32_t vocab_size = 0;
  std::optional<Token> eos;
  std::string description;
};

// The known format names, comma-separated (for --help and errors).
const char* known_formats();

Dataset open_dataset(const DataOptions& options);

}  // namespace lightring::data
