// Sequence-parallel forward and backward of one shard whose inputs the caller has
// already agreed across the group (the Python layer, lightring/agreement.py, agrees
// every call once, with messages in its own argument names, and passes every rank's
// shard length). The steps are those of parallel::forward / parallel::backward
// (parallel/sequence_parallel.h, docs/algorithm.md §3) without their agreement:
//   forward:  phase 1 (A_r), fold S0 into rank 0's pair, exclusive prefix, phase 2;
//   backward: phase 1 (C_r), fold G into the last rank's pair, exclusive suffix, phase 2.
// The same contract for the global states: S0 read on rank 0 only, the final state
// and G on the last rank, dS0 on rank 0.
//
// Invariant the caller guarantees (the agreement): every rank passes the same B, H,
// D, E, dtype, decay values, scale and schedule, lengths[g] is rank g's shard length
// and lengths[rank] == p.seqlen. A local failure here (e.g. an allocation) is not
// reported to the peers: they raise at the communicator's deadline, naming this rank.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/communicator.h"
#include "kernels/attention.h"
#include "parallel/sequence_parallel.h"

namespace lightring::csrc {

// s_in: out, [B,H,D,E] fp32 in p.device memory (S0 or 0 on rank 0). `schedule` must
// not be kAuto (resolve it with parallel::choose_schedule first).
void sp_forward_agreed(comm::Communicator& comm, const kernels::ForwardParams& p, float* s_in,
                       parallel::Schedule schedule, const std::vector<int64_t>& lengths);

// p.initial_state = S_in(r) from sp_forward_agreed; p.d_final_state = G on the last rank.
void sp_backward_agreed(comm::Communicator& comm, const kernels::BackwardParams& p,
                        parallel::Schedule schedule, const std::vector<int64_t>& lengths);

}  // namespace lightring::csrc
