#include "csrc/data/megatron.h"

#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.h"

namespace lightring::data {
namespace {

std::string strip_suffix(const std::string& path) {
  for (const char* ext : {".bin", ".idx"}) {
    size_t n = std::strlen(ext);
    if (path.size() > n && path.compare(path.size() - n, n, ext) == 0) {
      return path.substr(0, path.size() - n);
    }
  }
  return path;
}

bool integral(MegatronDtype d) {
  return d != MegatronDtype::kFloat32 && d != MegatronDtype::kFloat64;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  LR_CHECK(out.good(), "cannot create ", path);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  LR_CHECK(out.good(), "cannot write ", path);
}

}  // namespace

size_t megatron_itemsize(uint8_t code) {
  switch (code) {
    case 1:
    case 2:
      return 1;
    case 3:
    case 8:
      return 2;
    case 4:
    case 7:
      return 4;
    case 5:
    case 6:
      return 8;
    default:
      return 0;
  }
}

MegatronCorpus::MegatronCorpus(const std::string& prefix_in, const MegatronOptions& options)
    : prefix_(strip_suffix(prefix_in)),
      idx_((require_exists(prefix_ + ".idx", "Megatron index"), prefix_ + ".idx")),
      bin_((require_exists(prefix_ + ".bin", "Megatron data file"), prefix_ + ".bin")),
      eos_(options.eos) {
  const std::string& ipath = idx_.path();
  const uint8_t* p = idx_.data();
  size_t size = idx_.size();
  LR_CHECK(size >= kMegatronHeaderBytes, ipath, ": truncated index: ", size,
           " bytes, the header alone is ", kMegatronHeaderBytes);
  LR_CHECK(std::memcmp(p, kMegatronMagic, 9) == 0, ipath,
           ": bad magic: not a Megatron MMIDIDX index");
  uint64_t version = load_le<uint64_t>(p + 9);
  LR_CHECK(version == 1, ipath, ": index version ", version, ", only version 1 is known");
  uint8_t code = p[17];
  itemsize_ = megatron_itemsize(code);
  LR_CHECK(itemsize_ != 0, ipath, ": unknown dtype code ", int(code));
  dtype_ = static_cast<MegatronDtype>(code);
  LR_CHECK(integral(dtype_), ipath, ": dtype code ", int(code),
           " is a float type; tokens must be integers");
  uint64_t s = load_le<uint64_t>(p + 18);
  uint64_t c = load_le<uint64_t>(p + 26);
  LR_CHECK(s < (1ull << 40) && c < (1ull << 40), ipath, ": implausible counts (", s, " sequences, ",
           c, " document indices)");
  num_sequences_ = s;
  size_t need = kMegatronHeaderBytes + 12 * s + 8 * c;
  LR_CHECK(size >= need, ipath, ": truncated index: ", s, " sequences and ", c,
           " document indices need ", need, " bytes, the file has ", size);
  LR_CHECK(size == need || size == need + s, ipath, ": ", size - need,
           " unexpected bytes after the document indices");
  LR_CHECK(c >= 1, ipath, ": no document index (a valid index starts with 0)");

  const uint8_t* di = p + kMegatronHeaderBytes + 12 * s;
  LR_CHECK(load_le<int64_t>(di) == 0, ipath, ": the first document index is ", load_le<int64_t>(di),
           ", expected 0");
  LR_CHECK(load_le<int64_t>(di + 8 * (c - 1)) == static_cast<int64_t>(s), ipath,
           ": the last document index is ", load_le<int64_t>(di + 8 * (c - 1)),
           ", expected the sequence count ", s);
  for (size_t q = 0; q < s; ++q) {
    int32_t len = sequence_length(q);
    int64_t ptr = sequence_pointer(q);
    LR_CHECK(len >= 0 && ptr >= 0, ipath, ": sequence ", q, " has length ", len, " and pointer ",
             ptr);
    LR_CHECK(static_cast<uint64_t>(ptr) + uint64_t(len) * itemsize_ <= bin_.size(), bin_.path(),
             ": truncated data file: sequence ", q, " ends at byte ",
             uint64_t(ptr) + uint64_t(len) * itemsize_, " of ", bin_.size());
  }
  for (size_t k = 0; k + 1 < c; ++k) {
    int64_t a = load_le<int64_t>(di + 8 * k), b = load_le<int64_t>(di + 8 * (k + 1));
    LR_CHECK(a <= b, ipath, ": document indices decrease at document ", k, " (", a, " > ", b, ")");
    size_t length = 0;
    for (int64_t q = a; q < b; ++q) length += static_cast<size_t>(sequence_length(q));
    if (length > 0) docs_.push_back({size_t(a), size_t(b), length});
  }
  LR_CHECK(!docs_.empty(), "empty corpus: ", prefix_, " (", c - 1, " documents, no token)");

  // One pass over every token: negative ids and the largest id.
  int64_t max_id = eos_ ? int64_t(*eos_) : 0;
  for (size_t q = 0; q < s; ++q) {
    size_t base = static_cast<size_t>(sequence_pointer(q));
    for (int32_t i = 0; i < sequence_length(q); ++i) {
      int64_t t = element(base + size_t(i) * itemsize_);
      LR_CHECK(t >= 0 && t <= std::numeric_limits<int32_t>::max(), bin_.path(), ": token id ", t,
               " in sequence ", q, " at position ", i, " is not in [0, 2^31)");
      if (t > max_id) max_id = t;
      LR_CHECK(options.vocab_size == 0 || t < int64_t(options.vocab_size), bin_.path(),
               ": token id ", t, " in sequence ", q, " at position ", i,
               " is >= the vocabulary size ", options.vocab_size);
    }
  }
  vocab_size_ = options.vocab_size == 0 ? uint32_t(max_id + 1) : options.vocab_size;
  LR_CHECK(!eos_ || *eos_ < vocab_size_, prefix_, ": the EOS id ", eos_.value_or(0),
           " is >= the vocabulary size ", vocab_size_);
}

int32_t MegatronCorpus::sequence_length(size_t s) const {
  return load_le<int32_t>(idx_.data() + kMegatronHeaderBytes + 4 * s);
}

int64_t MegatronCorpus::sequence_pointer(size_t s) const {
  return load_le<int64_t>(idx_.data() + kMegatronHeaderBytes + 4 * num_sequences_ + 8 * s);
}

int64_t MegatronCorpus::element(size_t byte_offset) const {
  const uint8_t* p = bin_.data() + byte_offset;
  switch (dtype_) {
    case MegatronDtype::kUint8:
      return *p;
    case MegatronDtype::kInt8:
      return static_cast<int8_t>(*p);
    case MegatronDtype::kInt16:
      return load_le<int16_t>(p);
    case MegatronDtype::kUint16:
      return load_le<uint16_t>(p);
    case MegatronDtype::kInt32:
      return load_le<int32_t>(p);
    case MegatronDtype::kInt64:
      return load_le<int64_t>(p);
    default:
      return -1;
  }
}

void MegatronCorpus::read(size_t doc, size_t offset, size_t count, Token* out) const {
  const Doc& d = docs_[doc];
  size_t q = d.first_sequence;
  // Skip whole sequences before offset, then copy across sequence ends.
  while (offset >= size_t(sequence_length(q))) offset -= size_t(sequence_length(q++));
  while (count > 0) {
    size_t len = size_t(sequence_length(q));
    size_t take = std::min(count, len - offset);
    size_t base = size_t(sequence_pointer(q)) + offset * itemsize_;
    for (size_t i = 0; i < take; ++i) *out++ = Token(element(base + i * itemsize_));
    count -= take;
    offset = 0;
    ++q;
  }
}

MegatronWriter::MegatronWriter(std::string prefix, MegatronDtype dtype)
    : prefix_(std::move(prefix)), dtype_(dtype) {
  LR_CHECK(megatron_itemsize(uint8_t(dtype)) != 0 && integral(dtype), prefix_,
           ": the writer takes integer dtypes only (code ", int(dtype), ")");
}

void MegatronWriter::add_document(const std::vector<int64_t>& tokens) {
  add_document(tokens, {static_cast<int32_t>(tokens.size())});
}

void MegatronWriter::add_document(const std::vector<int64_t>& tokens,
                                  const std::vector<int32_t>& lengths) {
  LR_CHECK(!finalized_, prefix_, ": add_document after finalize");
  int64_t total = 0;
  for (int32_t l : lengths) {
    LR_CHECK(l >= 0, prefix_, ": negative sequence length ", l);
    total += l;
  }
  LR_CHECK(total == int64_t(tokens.size()), prefix_, ": sequence lengths sum to ", total,
           ", the document has ", tokens.size(), " tokens");
  for (int64_t t : tokens) {
    switch (dtype_) {
      case MegatronDtype::kUint8:
        LR_CHECK(t >= 0 && t <= 0xff, prefix_, ": token ", t, " does not fit uint8");
        data_.push_back(char(uint8_t(t)));
        break;
      case MegatronDtype::kInt8:
        LR_CHECK(t >= -128 && t <= 127, prefix_, ": token ", t, " does not fit int8");
        data_.push_back(char(int8_t(t)));
        break;
      case MegatronDtype::kInt16:
        LR_CHECK(t >= -32768 && t <= 32767, prefix_, ": token ", t, " does not fit int16");
        append_le(data_, int16_t(t));
        break;
      case MegatronDtype::kUint16:
        LR_CHECK(t >= 0 && t <= 0xffff, prefix_, ": token ", t, " does not fit uint16");
        append_le(data_, uint16_t(t));
        break;
      case MegatronDtype::kInt32:
        LR_CHECK(t >= INT32_MIN && t <= INT32_MAX, prefix_, ": token ", t, " does not fit int32");
        append_le(data_, int32_t(t));
        break;
      default:
        append_le(data_, t);
        break;
    }
  }
  sequence_lengths_.insert(sequence_lengths_.end(), lengths.begin(), lengths.end());
  document_indices_.push_back(int64_t(sequence_lengths_.size()));
}

void MegatronWriter::finalize() {
  LR_CHECK(!finalized_, prefix_, ": finalize called twice");
  finalized_ = true;
  write_bytes(prefix_ + ".bin", data_);
  std::string idx(kMegatronMagic, 9);
  append_le(idx, uint64_t(1));
  idx.push_back(char(uint8_t(dtype_)));
  append_le(idx, uint64_t(sequence_lengths_.size()));
  append_le(idx, uint64_t(document_indices_.size()));
  for (int32_t l : sequence_lengths_) append_le(idx, l);
  int64_t pointer = 0, itemsize = int64_t(megatron_itemsize(uint8_t(dtype_)));
  for (int32_t l : sequence_lengths_) {
    append_le(idx, pointer);
    pointer += l * itemsize;
  }
  for (int64_t d : document_indices_) append_le(idx, d);
  write_bytes(prefix_ + ".idx", idx);
}

}  // namespace lightring::data
