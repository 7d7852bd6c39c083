// The modes of lightring-bench (launch/README.md defines every metric):
//   run_timed          forward + backward rows (weak or strong scaling), optional --check
//   run_exchange_only  the state exchange alone, per schedule and message size
//   run_find_max       the longest global length that runs forward + backward
//   print_model        the cost model of the schedules (no communication)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"
#include "launch/bench_agree.h"
#include "launch/bench_device.h"
#include "launch/bench_options.h"
#include "launch/bench_report.h"

namespace lightring::launch {

struct BenchContext {
  const BenchOptions& o;
  comm::MpiCommunicator& world;  // host control: barriers, agreement on failures, --check
  comm::Communicator& sp;        // the sequence-parallel group (MPI on CPU, NCCL on CUDA)
  ComputeStream& stream;         // the compute stream of this rank
  RunInfo info;
};

// Milliseconds since t0 on the steady clock.
double since_ms(std::chrono::steady_clock::time_point t0);

// The median of x (0 for an empty x).
double median(std::vector<double> x);

// Shard lengths of a global length over P ranks: ⌊N/P⌋, the last N mod P ranks one more.
std::vector<int64_t> split_lengths(int64_t N, int P);

// Runs one exchange of each schedule the run uses (every schedule outside the
// timed mode) in both directions, so that NCCL connects its peers (and
// allocates their buffers) before any memory is measured.
void connect_peers(BenchContext& ctx);

// One timed row: `lengths` per rank, `schedule` as requested. Collective.
RowResult run_row(BenchContext& ctx, const std::vector<int64_t>& lengths,
                  parallel::Schedule schedule);

// The modes; each returns the process exit status (same on every rank).
int run_timed(BenchContext& ctx);
int run_exchange_only(BenchContext& ctx);
int run_find_max(BenchContext& ctx);
int print_model(const BenchOptions& o, const RunInfo& info, bool root);

}  // namespace lightring::launch
