// lightring-bench: times (and with -c checks) the sequence-parallel forward
// and backward of one Lightning Attention-2 layer under mpirun, one row per
// global sequence length. Metrics: launch/README.md.
//
//   mpirun -np 4 lightring-bench --backend cpu --check
//   mpirun -np 2 lightring-bench --local-len 16384,65536 --json out.json     (weak scaling)
//   mpirun -np 8 lightring-bench --exchange-only --msg-bytes 4096:8388608 -f 4
//   mpirun -np 2 lightring-bench --find-max -b 1048576
//   lightring-bench --model --ranks-per-node 8                               (cost model only)
#include <mpi.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#ifdef LIGHTRING_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "comm/nccl_communicator.h"
#endif

#include "comm/mpi_communicator.h"
#include "core/error.h"
#include "launch/bench_agree.h"
#include "launch/bench_cli.h"
#include "launch/bench_device.h"
#include "launch/bench_options.h"
#include "launch/bench_report.h"
#include "launch/bench_run.h"
#include "launch/bench_shard.h"
#include "parallel/sequence_parallel.h"
#include "parallel/topology.h"

#ifndef LIGHTRING_GIT_COMMIT
#define LIGHTRING_GIT_COMMIT "unknown"
#endif

namespace lightring::launch {
namespace {

RunInfo run_info(const BenchOptions& o, int world_size) {
  RunInfo info;
  info.world_size = world_size;
  info.device = device_description(o.backend);
  info.commit = LIGHTRING_GIT_COMMIT;
  char lib[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(lib, &len);
  std::string mpi(lib, len);
  mpi = mpi.substr(0, mpi.find_first_of(",\n"));
  info.versions = std::string("lightring ") + kBenchVersion + "; " + mpi;
#ifdef LIGHTRING_WITH_NCCL
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess)
    info.versions += "; NCCL " + std::to_string(nccl / 10000) + "." +
                     std::to_string(nccl / 100 % 100) + "." + std::to_string(nccl % 100);
#endif
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  info.date = date;
  return info;
}

// Device memory in use now (device_bytes_in_use), the most over the ranks of world (collective).
double max_in_use(comm::MpiCommunicator& world, kernels::Device backend) {
  const int64_t mine = static_cast<int64_t>(device_bytes_in_use(backend));
  std::vector<int64_t> all(static_cast<size_t>(world.size()));
  world.all_gather_host(&mine, all.data(), 1);
  return static_cast<double>(*std::max_element(all.begin(), all.end()));
}

// The communicator of the SP group (the whole world in this benchmark). CUDA: records the
// device memory in use after the context and after NCCL's init in info->startup_bytes.
std::unique_ptr<comm::Communicator> make_comm(const BenchOptions& o, comm::MpiCommunicator& world,
                                              const comm::MpiEnvironment& env, RunInfo* info) {
  if (o.backend == kernels::Device::kCpu)
    return std::make_unique<comm::MpiCommunicator>(world.handle(), comm::CommOptions{o.timeout_s});
#ifdef LIGHTRING_WITH_NCCL
  int count = 0;
  LR_CHECK(cudaGetDeviceCount(&count) == cudaSuccess && count > 0,
           "--backend cuda: no GPU visible");
  const int device = env.local_rank() % count;
  LR_CHECK(cudaSetDevice(device) == cudaSuccess, "cudaSetDevice(", device, ") failed");
  LR_CHECK(cudaFree(nullptr) == cudaSuccess, "creating the CUDA context on device ", device,
           " failed");
  info->startup_bytes.emplace_back("context", max_in_use(world, o.backend));
  auto nccl = comm::nccl_from_mpi(world, device, comm::CommOptions{o.timeout_s});
  info->startup_bytes.emplace_back("communicator", max_in_use(world, o.backend));
  info->transport = nccl->transport_summary();
  return nccl;
#else
  (void)env;
  (void)info;
  LR_THROW("--backend cuda needs a build with CUDA and NCCL; use --backend cpu");
#endif
}

// LIGHTRING_BENCH_STACK_PROBE=1 (CUDA): where NCCL's share of the P = 2 peak goes
// (measured in bench/NOTES.md). NCCL's kernels keep 1-2 KB of stack per thread (cuobjdump
// -res-usage of libnccl), and the driver reserves the stack size times every resident thread
// (2048 per SM) when the first of them launches. Prints the stack limit after the warm-up and
// records the device memory in use once the limit is set back to the 1 KB default (the next NCCL
// launch grows it again).
void probe_stack(BenchContext& ctx) {
#ifdef LIGHTRING_WITH_NCCL
  const char* env = std::getenv("LIGHTRING_BENCH_STACK_PROBE");
  if (ctx.o.backend != kernels::Device::kCuda || !env || std::string(env) != "1") return;
  size_t limit = 0;
  LR_CHECK(cudaDeviceGetLimit(&limit, cudaLimitStackSize) == cudaSuccess,
           "cudaDeviceGetLimit(cudaLimitStackSize) failed");
  if (ctx.world.rank() == 0)
    std::fprintf(stderr, "[stack probe] stack size after the warm-up: %zu bytes per thread\n",
                 limit);
  LR_CHECK(cudaDeviceSetLimit(cudaLimitStackSize, 1024) == cudaSuccess,
           "cudaDeviceSetLimit(cudaLimitStackSize, 1024) failed");
  ctx.info.startup_bytes.emplace_back("stack_1KB", max_in_use(ctx.world, ctx.o.backend));
#else
  (void)ctx;
#endif
}

// LIGHTRING_BENCH_MEM_LIMIT = BYTES or BYTES@RANK: a fake allocation limit
// (tests of the out-of-memory paths on the CPU).
void apply_memory_limit(int world_rank) {
  const char* env = std::getenv("LIGHTRING_BENCH_MEM_LIMIT");
  if (!env || !*env) return;
  const std::string text(env);
  const size_t at = text.find('@');
  const long long bytes = std::atoll(text.substr(0, at).c_str());
  LR_CHECK(bytes > 0, "LIGHTRING_BENCH_MEM_LIMIT must be BYTES or BYTES@RANK (got '", text, "')");
  if (at != std::string::npos && std::atoi(text.c_str() + at + 1) != world_rank) return;
  set_allocation_limit(static_cast<size_t>(bytes));
}

// The grace period of MpiEnvironment::end_after_failure: how long a failing rank waits for the
// others to report theirs before it ends the job (the deadline, at most 10 s).
double g_failure_grace_s = 10.0;

// Rank 0 checks that the --json file can be written before any row runs (an unwritable path is
// an error at start, not after the sweep). Leaves no file behind when there was none.
void check_json_writable(const std::string& path) {
  if (path.empty()) return;
  std::FILE* existing = std::fopen(path.c_str(), "r");
  if (existing) std::fclose(existing);
  std::FILE* f = std::fopen(path.c_str(), "a");
  LR_CHECK(f != nullptr, "--json: cannot write '", path, "': ", std::strerror(errno));
  std::fclose(f);
  if (!existing) std::remove(path.c_str());
}

int run(int argc, char** argv, const comm::MpiEnvironment& env) {
  const bool root = env.world_rank() == 0;
  // A rejected command line is reported through the option agreement, so that every rank says
  // why (not only the rank whose flags were wrong) and none waits for it.
  BenchOptions o;
  std::string parse_error;
  bool help = false;
  try {
    help = !parse_bench_options(argc, argv, root, &o);
    if (!help && root) check_json_writable(o.json_path);
    comm::resolve_timeout(comm::CommOptions{o.timeout_s});  // a malformed environment variable
  } catch (const Error& e) {
    parse_error = e.what();
  }
  if (help) return 0;
  set_activity("agreeing on the command line");
  // A rejected command line may hold a bad --timeout: the agreement then runs on the default.
  comm::MpiCommunicator world(MPI_COMM_WORLD,
                              comm::CommOptions{parse_error.empty() ? o.timeout_s : 0.0});
  g_failure_grace_s = std::min(world.timeout_s(), 10.0);
  agree_on_options(world, canonical_options(o), parse_error);

  RunInfo info = run_info(o, env.world_size());
  info.timeout_s = world.timeout_s();
  set_activity("gathering the node of every rank");
  info.nodes = parallel::discover_nodes(world);  // the same layout on every rank
  apply_node_layout(info.nodes, env.world_size(), &o);
  if (o.mode == BenchMode::kModel) {
    if (root) print_header(o, info);
    return print_model(o, info, root);
  }
  apply_memory_limit(env.world_rank());
  set_activity("setting up the communicators");
  std::unique_ptr<comm::Communicator> sp = make_comm(o, world, env, &info);
  ComputeStream stream(o.backend);
  // The copy ceiling: 1 GiB on a GPU (well beyond L2), 64 MiB on the host.
  if (o.ceilings)
    info.copy_GBps = copy_bandwidth_GBps(
        o.backend, o.backend == kernels::Device::kCuda ? (size_t{1} << 30) : (size_t{1} << 26));
  BenchContext ctx{o, world, *sp, stream, info};
  set_activity("connecting peers (one warm-up exchange per schedule)");
  connect_peers(ctx);
  if (o.backend == kernels::Device::kCuda)
    ctx.info.startup_bytes.emplace_back("connected", max_in_use(world, o.backend));
  probe_stack(ctx);
  if (root) print_header(o, ctx.info);
  switch (o.mode) {
    case BenchMode::kExchangeOnly:
      return run_exchange_only(ctx);
    case BenchMode::kFindMax:
      return run_find_max(ctx);
    default:
      return run_timed(ctx);
  }
}

}  // namespace
}  // namespace lightring::launch

int main(int argc, char** argv) {
  lightring::comm::MpiEnvironment env(&argc, &argv);
  try {
    return lightring::launch::run(argc, argv, env);
  } catch (const std::exception& e) {
    // Every rank that fails says why; the others stop waiting for it at their next poll, and a
    // rank that cannot (stopped, dead) is ended with the job.
    // The first line is the error alone; where it was raised goes on the second.
    std::string where;
    const std::string text = lightring::launch::user_message(e.what(), &where);
    const std::string message = text + "\n  (this rank was " + lightring::launch::activity() +
                                (where.empty() ? "" : "; raised at " + where) + ")";
    return env.end_after_failure(message, 2, lightring::launch::g_failure_grace_s);
  }
}
