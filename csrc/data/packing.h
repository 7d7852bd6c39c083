// Packing documents into training sequences, and the train/validation split.
//
// The stream of epoch e is the source's documents (the packer's subset) in the order of
// a permutation drawn from (seed, e), each followed by the source's EOS when it has one.
// With L tokens in that stream (the same L every epoch) and sequence length T, epoch e
// has ceil(L / T) sequences; sequence i holds stream positions [i*T, i*T + T):
//   input_ids[p]  = stream[i*T + p]
//   target_ids[p] = stream[i*T + p + 1], or kIgnoreTarget past the end of the stream
// so a document that does not fit continues at position 0 of the next sequence, and the
// last target of sequence i is the first input of sequence i+1. The last sequence of an
// epoch is padded to T with the EOS id (0 without EOS), targets kIgnoreTarget, as one
// padding segment. cu_seqlens starts a segment at 0, at every document start inside the
// sequence, and at the padding; a document's EOS belongs to that document's segment.
// Every token of every document is an input exactly once per epoch, in stream order.
#pragma once

#include <memory>
#include <vector>

#include "csrc/data/sequence.h"
#include "csrc/data/source.h"

namespace lightring::data {

// Held-out documents: `count` when nonzero, else round(fraction * num_documents).
struct ValidationSpec {
  double fraction = 0.0;
  uint64_t count = 0;
};

struct DocumentSplit {
  std::vector<uint64_t> train;       // ascending document ids
  std::vector<uint64_t> validation;  // ascending, disjoint from train
};

// The validation documents are the first of a permutation drawn from (seed); the rest
// train. Throws when training would be left empty.
DocumentSplit split_documents(uint64_t num_documents, const ValidationSpec& spec, uint64_t seed,
                              const char* what = "corpus");

struct PackingOptions {
  int64_t seq_len = 0;  // T
  uint64_t seed = 0;
  bool shuffle = true;  // false: documents in the given order every epoch (validation)
};

class DocumentPacker : public SequenceSource {
 public:
  // source must outlive the packer (shared ownership). documents: ids to pack.
  DocumentPacker(std::shared_ptr<const DocumentSource> source, std::vector<uint64_t> documents,
                 const PackingOptions& options);
  int64_t seq_len() const override { return options_.seq_len; }
  uint64_t sequences_per_epoch() const override { return num_sequences_; }
  uint32_t vocab_size() const override { return source_->vocab_size(); }
  void sequence(uint64_t epoch, uint64_t index, Sequence& out) override;

  uint64_t tokens_per_epoch() const { return total_tokens_; }
  // The document ids of epoch e in stream order.
  const std::vector<uint64_t>& epoch_order(uint64_t epoch);

 private:
  void prepare(uint64_t epoch);

  std::shared_ptr<const DocumentSource> source_;
  std::vector<uint64_t> documents_;
  PackingOptions options_;
  uint64_t eos_extra_;  // 1 when the source has an EOS
  uint64_t total_tokens_ = 0;
  uint64_t num_sequences_ = 0;
  // Cache of one epoch: order and the stream offset of each document in it.
  uint64_t cached_epoch_ = ~0ull;
  std::vector<uint64_t> order_;
  std::vector<uint64_t> starts_;  // [n + 1]
  std::vector<Token> scratch_;
};

}  // namespace lightring::data
