// The shape agreement that opens every sequence-parallel call: each rank
// all-gathers a small record (B, H, D, E, dtype, device, decay presence, scale,
// its shard length, whether its local input was valid, which global states it
// passed). Every rank evaluates the same gathered table, so a mismatch throws
// the same lightring::Error on every rank of the group instead of a hang.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "kernels/attention.h"

namespace lightring::parallel {

struct LocalInput {
  const kernels::Problem* problem = nullptr;
  std::string error;            // non-empty: this rank's input was rejected (the message)
  bool has_head_state = false;  // forward: S0 given; only SP rank 0 may
  bool has_tail_state = false;  // backward: G given; only the last SP rank may
};

// Returns every rank's shard length in rank order, or throws on every rank.
// `what` names the call in messages ("forward", "backward").
std::vector<int64_t> agree_on_shapes(comm::Communicator& comm, const LocalInput& in,
                                     const char* what);

}  // namespace lightring::parallel
