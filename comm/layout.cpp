// DP × SP group layout (see comm/layout.h).
#include "comm/layout.h"

#include "core/error.h"

namespace lightring::comm {

GroupLayout make_layout(int world_rank, int world_size, int sp_size) {
  LR_CHECK(world_size >= 1 && world_rank >= 0 && world_rank < world_size, "make_layout: rank ",
           world_rank, " is not in a world of ", world_size);
  LR_CHECK(sp_size >= 1 && world_size % sp_size == 0, "the sequence-parallel size (", sp_size,
           ") must divide the number of ranks (", world_size, ")");
  GroupLayout l;
  l.world_rank = world_rank;
  l.world_size = world_size;
  l.sp_size = sp_size;
  l.dp_size = world_size / sp_size;
  l.sp_rank = world_rank % sp_size;
  l.dp_rank = world_rank / sp_size;
  return l;
}

ProcessGroups make_groups(Communicator& world, int sp_size) {
  ProcessGroups g;
  g.layout = make_layout(world.rank(), world.size(), sp_size);
  // SP group: color = which block of S consecutive ranks; key = position in the sequence.
  g.sp = world.split(g.layout.dp_rank, g.layout.sp_rank);
  // DP group: color = position in the sequence; key = which replica.
  g.dp = world.split(g.layout.sp_rank, g.layout.dp_rank);
  LR_CHECK(g.sp->size() == sp_size && g.sp->rank() == g.layout.sp_rank,
           "make_groups: the SP split gave rank ", g.sp->rank(), " of ", g.sp->size(),
           ", expected ", g.layout.sp_rank, " of ", sp_size);
  return g;
}

}  // namespace lightring::comm
