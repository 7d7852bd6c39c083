// The agreement that opens every sequence-parallel call: each rank all-gathers
// a small fixed-size record (which call this is, B, H, D, E, dtype, device,
// decay presence and a 128-bit digest of its exact values, scale, schedule, its
// shard length, whether its local input was valid, which global states it
// passed). Every rank evaluates the same gathered table, so a mismatch throws
// the same lightring::Error on every rank of the group instead of a hang or a
// wrong answer; when a rank rejected its own input, the ranks exchange the
// messages (a second bounded all-gather) and every rank reports them all.
// Both all-gathers are bounded by the communicator's deadline. The record also
// carries the rank's packed-document flags (DocumentFlags), so that every rank
// knows every rank's resets and checks the layout of documents across shards.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "kernels/attention.h"
#include "parallel/sequence_parallel.h"

namespace lightring::parallel {

// Which call of a pair a rank is in: a rank that skips a backward meets the others' backward
// with its next forward, and the agreement says so.
enum class Call { kForward = 0, kBackward = 1 };

struct LocalInput {
  const kernels::Problem* problem = nullptr;
  std::string error;            // non-empty: this rank's input was rejected (the message)
  bool has_head_state = false;  // forward: S0 given; only SP rank 0 may
  bool has_tail_state = false;  // backward: G given; only the last SP rank may
  int schedule = 0;             // the schedule this rank asked for (parallel::Schedule)
};

struct Agreement {
  std::vector<int64_t> lengths;          // every rank's shard length, in rank order
  std::vector<DocumentFlags> documents;  // every rank's document flags, in rank order
};

// Returns what every rank passed, or throws on every rank.
Agreement agree_on_shapes(comm::Communicator& comm, const LocalInput& in, Call call);

// The rules of packed documents across the shards of a group (parallel/sequence_parallel.h),
// checked on a table every rank holds: one "\n  …" line per broken rule, empty when none is.
std::string document_layout_errors(const std::vector<DocumentFlags>& docs);

}  // namespace lightring::parallel
