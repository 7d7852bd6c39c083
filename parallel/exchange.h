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
//
// Resets (packed documents, docs/algorithm.md §5): a position u with a reset
// has the pair scalar a_u = 0, so nothing from before u passes through it (its
// own X_u still does):
//
//     excl(v) = Σ_{u<v, no reset at u+1 .. v-1} λ^{len(u+1 .. v-1)} X_u
//
// The flags are host values known on every rank, so every schedule sends the
// same messages with and without resets; a reset only skips combines.
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
  // Per rank, in rank order (not scan order): nonzero = that rank's pair scalar is 0.
  // Empty: no resets. Otherwise one entry per rank, the same on every rank.
  std::vector<uint8_t> resets;
};

// Writes excl(v) for this rank into `excl` (state-sized, device memory when
// device == kCuda). `x` is not modified. `schedule` must not be kAuto.
// Returns the number of state messages this rank sent.
int exclusive_scan(comm::Communicator& comm, Schedule schedule, const ScanSpec& spec,
                   const float* x, float* excl);

}  // namespace lightring::parallel
