// Inputs and the --check of lightring-bench.
//
// Inputs are generated per shard from (seed, rank, tensor), so every rank
// creates only its own shard and rank 0 can recreate any shard for the
// reference. --check: rank 0 runs the unsharded problem with the CPU backend
// in fp32 on the same (dtype-rounded) inputs, gathers every rank's outputs and
// gradients over MPI, and compares:
//   rel_err  = max over tensors (o, dq, dk, dv, final state, dS0; with --docs --states also the
//              per-document final states, each from the rank where its document ends, and
//              initial-state gradients, each from the rank where it starts) of ‖x − ref‖ / ‖ref‖
//   #wrong   = elements with |x − ref| > tol_elem·(|ref| + rms(ref))
// with tol_elem = 1e-3 (fp32), 1e-2 (fp16), 5e-2 (bf16); the row passes when
// rel_err <= 1e-4 (fp32), 5e-3 (fp16), 2e-2 (bf16) and #wrong == 0. With --docs the reference
// is the unsharded packed stream with the row's global offsets `cu` (bench_docs.h).
#pragma once

#include <cstdint>
#include <vector>

#include "comm/mpi_communicator.h"
#include "launch/bench_options.h"
#include "launch/bench_shard.h"

namespace lightring::launch {

// Fills the shard of `rank` (inputs, decay, S0 on rank 0 and G on the last
// rank when opt.states) deterministically.
void fill_shard_inputs(const BenchOptions& opt, int rank, int world_size, Shard& shard);

struct CheckResult {
  double rel_err = 0.0;
  int64_t num_wrong = 0;
  bool pass = true;
};

// Collective over world (rank r holds shard r; every message bounded by its
// deadline); the result is the same on every rank.
CheckResult check_against_unsharded(comm::MpiCommunicator& world, const BenchOptions& opt,
                                    const std::vector<int64_t>& lengths,
                                    const std::vector<int64_t>& cu, Shard& shard);

}  // namespace lightring::launch
