#include "csrc/data/packing.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "csrc/data/rng.h"

namespace lightring::data {

DocumentSplit split_documents(uint64_t num_documents, const ValidationSpec& spec, uint64_t seed,
                              const char* what) {
  LR_CHECK(spec.fraction >= 0.0 && spec.fraction < 1.0, "validation fraction ", spec.fraction,
           " is not in [0, 1)");
  uint64_t num_val = spec.count;
  if (num_val == 0 && spec.fraction > 0.0) {
    num_val = std::max<uint64_t>(1, uint64_t(std::llround(spec.fraction * double(num_documents))));
  }
  LR_CHECK(num_val < num_documents, what, ": ", num_documents, " documents leave none to train on ",
           "after holding out ", num_val, " for validation");
  std::vector<uint64_t> ids(num_documents);
  for (uint64_t i = 0; i < num_documents; ++i) ids[i] = i;
  Rng rng(mix_seed(seed, uint64_t(Stream::kSplit)));
  shuffle(ids, rng);
  DocumentSplit split;
  split.validation.assign(ids.begin(), ids.begin() + num_val);
  split.train.assign(ids.begin() + num_val, ids.end());
  std::sort(split.validation.begin(), split.validation.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

DocumentPacker::DocumentPacker(std::shared_ptr<const DocumentSource> source,
                               std::vector<uint64_t> documents, const PackingOptions& options)
    : source_(std::move(source)), documents_(std::move(documents)), options_(options) {
  LR_CHECK(options_.seq_len >= 1 && options_.seq_len < (int64_t(1) << 31),
           "sequence length must be in [1, 2^31) (got ", options_.seq_len, ")");
  LR_CHECK(!documents_.empty(), "empty corpus: no document to pack from ", source_->describe());
  LR_CHECK(source_->vocab_size() <= uint32_t(INT32_MAX), source_->describe(), ": vocabulary of ",
           source_->vocab_size(), " ids does not fit int32 token ids");
  eos_extra_ = source_->eos() ? 1 : 0;
  for (uint64_t d : documents_) {
    LR_CHECK(d < source_->num_documents(), "document ", d, " is out of range (",
             source_->num_documents(), " documents in ", source_->describe(), ")");
    total_tokens_ += source_->document_length(d) + eos_extra_;
  }
  uint64_t t = uint64_t(options_.seq_len);
  num_sequences_ = (total_tokens_ + t - 1) / t;
}

void DocumentPacker::prepare(uint64_t epoch) {
  if (epoch == cached_epoch_) return;
  order_ = documents_;
  if (options_.shuffle) {
    Rng rng(mix_seed(options_.seed, uint64_t(Stream::kShuffle), epoch));
    shuffle(order_, rng);
  }
  starts_.resize(order_.size() + 1);
  starts_[0] = 0;
  for (size_t k = 0; k < order_.size(); ++k) {
    starts_[k + 1] = starts_[k] + source_->document_length(order_[k]) + eos_extra_;
  }
  cached_epoch_ = epoch;
}

const std::vector<uint64_t>& DocumentPacker::epoch_order(uint64_t epoch) {
  prepare(epoch);
  return order_;
}

void DocumentPacker::sequence(uint64_t epoch, uint64_t index, Sequence& out) {
  LR_CHECK(index < num_sequences_, "sequence ", index, " is out of range (", num_sequences_,
           " per epoch)");
  prepare(epoch);
  const int64_t t = options_.seq_len;
  const uint64_t begin = index * uint64_t(t);
  const uint32_t vocab = source_->vocab_size();
  const Token pad = source_->eos().value_or(0);
  out = Sequence{};
  out.input_ids.reserve(size_t(t));
  out.cu_seqlens.push_back(0);

  // stream[begin, begin + t + 1): inputs are the first t, targets the last t.
  std::vector<int32_t> window;
  window.reserve(size_t(t) + 1);
  size_t k = size_t(std::upper_bound(starts_.begin(), starts_.end(), begin) - starts_.begin()) - 1;
  uint64_t pos = begin;
  while (window.size() < size_t(t) + 1 && k < order_.size()) {
    uint64_t doc = order_[k];
    uint64_t len = source_->document_length(doc);
    uint64_t off = pos - starts_[k];
    if (window.size() < size_t(t)) {
      if (off == 0 && !window.empty()) out.cu_seqlens.push_back(int32_t(window.size()));
      if (out.segment_documents.size() < out.cu_seqlens.size()) {
        out.segment_documents.push_back(int64_t(doc));
      }
    }
    uint64_t want = size_t(t) + 1 - window.size();
    if (off < len) {
      size_t take = size_t(std::min(want, len - off));
      scratch_.resize(take);
      source_->read(size_t(doc), size_t(off), take, scratch_.data());
      for (size_t i = 0; i < take; ++i) {
        LR_CHECK(scratch_[i] < vocab, source_->describe(), ": token id ", scratch_[i],
                 " in document ", doc, " at position ", off + i, " is >= the vocabulary size ",
                 vocab);
        window.push_back(int32_t(scratch_[i]));
      }
      pos += take;
      want -= take;
    }
    if (want > 0 && eos_extra_ != 0 && pos == starts_[k + 1] - 1) {
      window.push_back(int32_t(pad));
      ++pos;
    }
    if (pos == starts_[k + 1]) ++k;
  }
  size_t real = std::min(window.size(), size_t(t));
  out.input_ids.assign(window.begin(), window.begin() + real);
  out.target_ids.resize(real);
  for (size_t p = 0; p < real; ++p) {
    // Past the end of the stream there is no next token.
    out.target_ids[p] = p + 1 < window.size() ? window[p + 1] : kIgnoreTarget;
  }
  if (real < size_t(t)) {
    out.cu_seqlens.push_back(int32_t(real));
    out.segment_documents.push_back(-1);
    out.input_ids.resize(size_t(t), int32_t(pad));
    out.target_ids.resize(size_t(t), kIgnoreTarget);
  }
  out.cu_seqlens.push_back(int32_t(t));
}

}  // namespace lightring::data
