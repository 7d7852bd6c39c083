// Data-parallel sharding and the resumable position.
//
// The global order of training sequences is epoch 0's sequences 0..n-1, then epoch 1's,
// and so on: global index g = epoch * n + sequence. Rank r of D data-parallel ranks takes
// g = start + r, start + r + D, start + r + 2D, ...: its j-th sequence is
// g = start + j*D + r. The Position is the global index of the next row of D sequences;
// it is the same on every rank after the same number of next() calls, so a checkpoint
// stores one Position for the whole job. Ranks never run out: epochs roll over.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "csrc/data/sequence.h"

namespace lightring::data {

struct Position {
  uint64_t epoch = 0;
  uint64_t sequence = 0;  // < sequences_per_epoch
  bool operator==(const Position& o) const { return epoch == o.epoch && sequence == o.sequence; }
  bool operator!=(const Position& o) const { return !(*this == o); }

  // {"epoch":E,"sequence":S}
  std::string to_json() const;
  static Position from_json(const std::string& json);
  // 16 bytes: epoch, sequence, uint64 little-endian.
  std::string to_bytes() const;
  static Position from_bytes(const std::string& bytes);
};

class ShardedLoader {
 public:
  // source must outlive the loader.
  ShardedLoader(SequenceSource& source, int dp_rank, int dp_size, Position start = {});
  // This rank's next sequence; advances the position by one row of dp_size.
  void next(Sequence& out);
  // `batch` sequences: next() batch times.
  std::vector<Sequence> next_batch(int batch);
  // Where the next call starts (identical on every rank).
  Position position() const { return position_; }
  void seek(Position position);

 private:
  SequenceSource& source_;
  int rank_, size_;
  Position position_;
};

// The validation sequences rank r of D evaluates: r, r + D, ... below n (the counts of
// ranks differ by at most one; every index is on exactly one rank).
std::vector<uint64_t> shard_indices(uint64_t n, int rank, int size);

}  // namespace lightring::data
