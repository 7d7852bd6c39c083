// The exchange step of docs/algorithm.md §3: an exclusive scan of state pairs
// over the ranks of one group, with the three schedules.
//
// Ranks are visited in scan order: rank order for the forward prefix, reverse
// rank order for the backward suffix (reverse = true). With v the position of
// this rank in that order and X_u the X part of position u's pair (its seed,
// S0 or G, already folded in by the caller), the result is
//
//     excl(v) = Σ_{u<v} λ^{len(u+1 .. v-1)} X_u        (0 at v = 0)
//
// the X part of (a_0,X_0) ⊕ … ⊕ (a_{v-1},X_{v-1}) in scan order, where len(·)
// sums the shard lengths of the positions strictly between u and v. The
// lengths are host values; λ^len is computed where the states live
// (kernels::axpy_decay, kernels/state_ops.h); only X travels.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/communicator.h"
#include "kernels/state_ops.h"
#include "parallel/sequence_parallel.h"

namespace lightring::parallel {

struct ScanSpec {
  kernels::Device device = kernels::Device::kCpu;
  void* stream = nullptr;  // compute stream (CUDA) or nullptr
  int64_t batch = 0, heads = 0,
          per_head = 0;          // one state = batch·heads·per_head fp32 (per_head = D·E)
  const float* decay = nullptr;  // [H] decay rates in `device` memory; nullptr: λ = 1
  std::vector<int64_t> lengths;  // shard length of every rank, in rank order
  bool reverse = false;          // false: prefix (forward); true: suffix (backward)
};

// Writes excl(v) for this rank into `excl` (state-sized, device memory when
// device == kCuda). `x` is not modified. `schedule` must not be kAuto.
// Returns the number of state messages this rank sent.
int exclusive_scan(comm::Communicator& comm, Schedule schedule, const ScanSpec& spec,
                   const float* x, float* excl);

}  // namespace lightring::parallel
