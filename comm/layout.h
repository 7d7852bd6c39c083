// Data-parallel × sequence-parallel process groups.
//
// World rank r of W ranks with SP size S (W % S == 0):
//   SP group  = the consecutive block of S ranks containing r: ranks [S·⌊r/S⌋, S·⌊r/S⌋ + S)
//               sp_rank = r % S   (the shard index: the position in the sequence)
//   DP group  = the ranks with the same sp_rank: {sp_rank, sp_rank + S, ...}
//               dp_rank = ⌊r/S⌋    (which sequence / replica)
// Consecutive SP blocks keep a sequence's neighbours on one node when ranks
// are numbered node by node, so the state exchange stays on NVLink.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace lightring::comm {

struct GroupLayout {
  int world_rank = 0, world_size = 1;
  int sp_size = 1, dp_size = 1;
  int sp_rank = 0, dp_rank = 0;
};

// Throws if sp_size does not divide world_size.
GroupLayout make_layout(int world_rank, int world_size, int sp_size);

struct ProcessGroups {
  GroupLayout layout;
  std::unique_ptr<Communicator> sp;  // the shards of one sequence
  std::unique_ptr<Communicator> dp;  // the replicas of one shard position
};

// Splits `world` (collective over it) into the SP and DP groups of the layout.
ProcessGroups make_groups(Communicator& world, int sp_size);

}  // namespace lightring::comm
