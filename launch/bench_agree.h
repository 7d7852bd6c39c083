// Agreement between the ranks of lightring-bench, every step bounded by the
// deadline of the world communicator (comm::resolve_timeout()):
//   agree_on_options  before any message whose size depends on an option
//   agreed            after each phase that can fail locally (allocation, a pass)
//   max_over_ranks / all_ranks   the reductions of the reports
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "launch/bench_options.h"

namespace lightring::launch {

// Every option that must be the same on every rank, one "name value" line each, in a fixed order.
std::string canonical_options(const BenchOptions& o);

// Gathers every rank's canonical options (or the error its command line was rejected with) and
// throws the same lightring::Error on every rank when a command line was rejected or an option
// differs, naming the option and each rank's value. Collective over `world`.
void agree_on_options(comm::MpiCommunicator& world, const std::string& options,
                      const std::string& error);

// Runs `phase`, then every rank of `world` learns whether all succeeded. A
// failure anywhere throws lightring::Error on every rank (the failing rank its
// own message, the others one naming the lowest failing rank), so no rank
// enters the next collective alone and a local out-of-memory never hangs peers.
// A CommError (a peer timed out or gave up) is rethrown at once: the agreement
// could not complete without that peer.
void agreed(comm::MpiCommunicator& world, const char* what, const std::function<void()>& phase);

// What this rank is doing ("row N=32768 (ring), iteration 3: forward"), for the message of a
// failure that ends the run (main prints it after the error) and for the progress line
// (bench_cli.h). Thread-safe.
void set_activity(std::string what);
std::string activity();

// Element-wise maximum of x over the ranks of world (every rank passes the same size).
std::vector<double> max_over_ranks(comm::MpiCommunicator& world, const std::vector<double>& x);

// Whether ok is true on every rank of world.
bool all_ranks(comm::MpiCommunicator& world, bool ok);

}  // namespace lightring::launch
