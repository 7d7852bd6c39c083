#include "csrc/data/loader.h"

#include <cctype>
#include <cstring>

#include "core/error.h"
#include "csrc/data/io.h"

namespace lightring::data {
namespace {

// Reads the unsigned integer value of "key": in a flat JSON object.
uint64_t json_field(const std::string& json, const char* key) {
  std::string quoted = std::string("\"") + key + "\"";
  size_t at = json.find(quoted);
  LR_CHECK(at != std::string::npos, "data position: no \"", key, "\" in '", json, "'");
  size_t i = at + quoted.size();
  while (i < json.size() && std::isspace(static_cast<unsigned char>(json[i]))) ++i;
  LR_CHECK(i < json.size() && json[i] == ':', "data position: no ':' after \"", key, "\" in '",
           json, "'");
  ++i;
  while (i < json.size() && std::isspace(static_cast<unsigned char>(json[i]))) ++i;
  LR_CHECK(i < json.size() && std::isdigit(static_cast<unsigned char>(json[i])),
           "data position: \"", key, "\" is not an unsigned integer in '", json, "'");
  uint64_t v = 0;
  for (; i < json.size() && std::isdigit(static_cast<unsigned char>(json[i])); ++i) {
    uint64_t d = uint64_t(json[i] - '0');
    LR_CHECK(v <= (UINT64_MAX - d) / 10, "data position: \"", key, "\" overflows in '", json, "'");
    v = v * 10 + d;
  }
  return v;
}

}  // namespace

std::string Position::to_json() const {
  return "{\"epoch\":" + std::to_string(epoch) + ",\"sequence\":" + std::to_string(sequence) + "}";
}

Position Position::from_json(const std::string& json) {
  return Position{json_field(json, "epoch"), json_field(json, "sequence")};
}

std::string Position::to_bytes() const {
  std::string out;
  append_le(out, epoch);
  append_le(out, sequence);
  return out;
}

Position Position::from_bytes(const std::string& bytes) {
  LR_CHECK(bytes.size() == 16, "data position: ", bytes.size(), " bytes, expected 16");
  const uint8_t* p = reinterpret_cast<const uint8_t*>(bytes.data());
  return Position{load_le<uint64_t>(p), load_le<uint64_t>(p + 8)};
}

ShardedLoader::ShardedLoader(SequenceSource& source, int dp_rank, int dp_size, Position start)
    : source_(source), rank_(dp_rank), size_(dp_size) {
  LR_CHECK(dp_size >= 1 && dp_rank >= 0 && dp_rank < dp_size, "data-parallel rank ", dp_rank,
           " of ", dp_size, " is out of range");
  seek(start);
}

void ShardedLoader::seek(Position position) {
  LR_CHECK(position.sequence < source_.sequences_per_epoch(), "data position ", position.to_json(),
           " is past the ", source_.sequences_per_epoch(),
           " sequences of an epoch (a position saved for another corpus or sequence length?)");
  position_ = position;
}

void ShardedLoader::next(Sequence& out) {
  const uint64_t n = source_.sequences_per_epoch();
  uint64_t g = position_.sequence + uint64_t(rank_);
  source_.sequence(position_.epoch + g / n, g % n, out);
  uint64_t advanced = position_.sequence + uint64_t(size_);
  position_.epoch += advanced / n;
  position_.sequence = advanced % n;
}

std::vector<Sequence> ShardedLoader::next_batch(int batch) {
  LR_CHECK(batch >= 1, "batch must be >= 1 (got ", batch, ")");
  std::vector<Sequence> out(static_cast<size_t>(batch));
  for (auto& s : out) next(s);
  return out;
}

std::vector<uint64_t> shard_indices(uint64_t n, int rank, int size) {
  LR_CHECK(size >= 1 && rank >= 0 && rank < size, "rank ", rank, " of ", size, " is out of range");
  std::vector<uint64_t> out;
  for (uint64_t i = uint64_t(rank); i < n; i += uint64_t(size)) out.push_back(i);
  return out;
}

}  // namespace lightring::data
