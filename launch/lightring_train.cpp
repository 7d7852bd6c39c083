// lightring-train: pretraining of a TransNormerLLM model over data x sequence parallel ranks,
// launched with mpirun (docs/training.md). Options, setup, the loop of launch/train_loop.h.
#include <torch/torch.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

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

// Where every world rank runs, "lr-node0 (ranks 0-1), lr-node1 (ranks 2-3)", gathered over the
// world (every rank calls it): a launcher's message about a lost host ("Remote daemon ... on
// node lr-node1") then names the ranks that were lost with it.
std::string describe_hosts(comm::MpiCommunicator& world) {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) std::snprintf(name, sizeof(name), "?");
  const std::vector<std::string> hosts = comm::all_gather_strings(world, name);
  std::map<std::string, std::vector<int>> ranks_of;  // host -> its world ranks, ascending
  std::vector<std::string> order;                    // hosts in the order of their first rank
  for (int r = 0; r < static_cast<int>(hosts.size()); ++r) {
    if (ranks_of[hosts[r]].empty()) order.push_back(hosts[r]);
    ranks_of[hosts[r]].push_back(r);
  }
  std::ostringstream out;
  for (size_t h = 0; h < order.size(); ++h) {
    const std::vector<int>& r = ranks_of[order[h]];
    out << (h ? ", " : "") << order[h] << (r.size() > 1 ? " (ranks " : " (rank ");
    for (size_t i = 0; i < r.size();) {  // runs of consecutive ranks as "a-b"
      size_t j = i;
      while (j + 1 < r.size() && r[j + 1] == r[j] + 1) ++j;
      out << (i ? "," : "") << r[i];
      if (j > i) out << "-" << r[j];
      i = j + 1;
    }
    out << ")";
  }
  return out.str();
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
  const std::string hosts = describe_hosts(world);
  if (root) std::cout << "lightring-train: hosts " << hosts << std::endl;
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
