// lightring-train: pretraining of a TransNormerLLM model over data x sequence parallel ranks,
// launched with mpirun (docs/training.md). Options, setup, the loop of launch/train_loop.h.
#include <torch/torch.h>

#include <csignal>
#include <iostream>

#include "comm/mpi_communicator.h"
#include "core/error.h"
#include "launch/train_dist.h"
#include "launch/train_loop.h"
#include "launch/train_options.h"

namespace lightring::launch {
namespace {

void request_stop(int) {
  g_stop_requested = 1;
}

// How long a failing rank waits for the others to report (MpiEnvironment::end_after_failure).
double g_failure_grace_s = 10.0;

int run(int argc, char** argv, const comm::MpiEnvironment& env) {
  const bool root = env.world_rank() == 0;
  // Every rank parses; a rejected command line is agreed over the world so that every rank
  // stops with the reason (not only the rank whose flags were wrong).
  TrainOptions o;
  std::string error;
  bool help = false;
  try {
    help = !parse_train_options(argc, argv, root, &o);
    if (!help) {
      check_world(&o, env.world_size());
      comm::resolve_timeout(comm::CommOptions{o.timeout_s});  // a malformed environment value
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (help) return 0;
  comm::MpiCommunicator world(MPI_COMM_WORLD, comm::CommOptions{error.empty() ? o.timeout_s : 0});
  g_failure_grace_s = std::min(world.timeout_s(), 10.0);
  agree_on_errors(world, error, "lightring-train: bad command line");
  // Every rank must run the same options (a launcher that passes different flags per rank).
  const std::vector<std::string> all = comm::all_gather_strings(world, canonical_options(o));
  for (size_t r = 1; r < all.size(); ++r)
    LR_CHECK(all[r] == all[0], "lightring-train: rank ", r,
             " runs with other options than rank 0 (every rank needs the same command line)");
  torch::set_num_threads(o.threads);
  std::signal(SIGTERM, request_stop);
  std::signal(SIGINT, request_stop);
  return run_training(o, world);
}

}  // namespace
}  // namespace lightring::launch

int main(int argc, char** argv) {
  lightring::comm::MpiEnvironment env(&argc, &argv);
  try {
    return lightring::launch::run(argc, argv, env);
  } catch (const std::exception& e) {
    const std::string message =
        std::string(e.what()) + "\n  (this rank was " + lightring::launch::train_activity() + ")";
    return env.end_after_failure(message, 2, lightring::launch::g_failure_grace_s);
  }
}
