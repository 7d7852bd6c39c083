// The training loop of lightring-train: data -> SP shards -> model -> loss over the global
// batch -> gradients summed over every rank -> clipping -> AdamW, with evaluation, checkpoints
// and reports (docs/training.md).
//
// Gradient reduction: each rank's loss is the sum of its shard's token losses divided by the
// number of target tokens of the whole global batch (all DP ranks, all SP shards), so the sum
// of every rank's gradient is the gradient of the global mean loss: one all-reduce (sum) over
// the world replaces "sum over SP, average over DP", and SP = 2 trains as SP = 1 (up to fp32
// rounding of the sums). Every rank then holds the same gradient, clips it the same way and
// takes the same AdamW step, so the replicas stay identical (checked at start and after resume).
#pragma once

#include <csignal>
#include <memory>

#include "comm/layout.h"
#include "comm/mpi_communicator.h"
#include "launch/train_options.h"

namespace lightring::launch {

// Set by the SIGTERM/SIGINT handler of main; the ranks agree on it once per step, save a
// checkpoint and end with status 0.
extern volatile std::sig_atomic_t g_stop_requested;

// What the current phase is, for the failure message of main ("this rank was ...").
const char* train_activity();

// Runs the job on this rank; returns the exit status (0). Throws lightring::Error on failure,
// after the ranks agreed on it where the failure is a bad input.
int run_training(const TrainOptions& options, comm::MpiCommunicator& world);

}  // namespace lightring::launch
