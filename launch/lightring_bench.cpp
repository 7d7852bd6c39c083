// lightring-bench: times (and with -c checks) the sequence-parallel forward
// and backward of one Lightning Attention-2 layer under mpirun, one row per
// global sequence length. Metrics: launch/README.md.
//
//   mpirun -np 4 lightring-bench --backend cpu --check
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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
#include "kernels/error.h"
#include "launch/bench_check.h"
#include "launch/bench_options.h"
#include "launch/bench_report.h"
#include "launch/bench_shard.h"
#include "parallel/sequence_parallel.h"

#ifndef LIGHTRING_GIT_COMMIT
#define LIGHTRING_GIT_COMMIT "unknown"
#endif

namespace lightring::launch {
namespace {

using Clock = std::chrono::steady_clock;

double since_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

std::vector<int64_t> split_lengths(int64_t N, int P) {
  std::vector<int64_t> len(P, N / P);
  for (int64_t i = 0; i < N % P; ++i) len[P - 1 - i] += 1;
  return len;
}

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
  info.versions = "lightring 0.1.0; " + mpi;
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

// The communicator of the SP group (the whole world in this benchmark).
std::unique_ptr<comm::Communicator> make_comm(const BenchOptions& o, comm::MpiCommunicator& world,
                                              const comm::MpiEnvironment& env) {
  if (o.backend == kernels::Device::kCpu)
    return std::make_unique<comm::MpiCommunicator>(world.handle(), comm::CommOptions{o.timeout_s});
#ifdef LIGHTRING_WITH_NCCL
  int count = 0;
  LR_CHECK(cudaGetDeviceCount(&count) == cudaSuccess && count > 0,
           "--backend cuda: no GPU visible");
  const int device = env.local_rank() % count;
  LR_CHECK(cudaSetDevice(device) == cudaSuccess, "cudaSetDevice(", device, ") failed");
  return comm::nccl_from_mpi(world, device, comm::CommOptions{o.timeout_s});
#else
  (void)env;
  LR_THROW("--backend cuda needs a build with CUDA and NCCL; use --backend cpu");
#endif
}

RowResult run_length(const BenchOptions& o, int64_t N, comm::Communicator& sp,
                     comm::MpiCommunicator& world) {
  const int P = sp.size(), r = sp.rank();
  const std::vector<int64_t> lengths =
      o.local_len > 0 ? std::vector<int64_t>(P, o.local_len) : split_lengths(N, P);
  LR_CHECK(*std::min_element(lengths.begin(), lengths.end()) >= 1, "global length ", N,
           " is shorter than the number of ranks (", P, ")");
  Shard shard(o.backend, ShardShape{o.batch, o.heads, lengths[r], o.dim, o.vdim, o.dtype});
  fill_shard_inputs(o, r, P, shard);
  parallel::Options popt;
  popt.schedule = o.schedule;
  if (o.backend == kernels::Device::kCpu)
    popt.link = {1.5, 5e3, 5e3};  // shared-memory MPI, host axpy

  std::vector<double> fwd, bwd, xchg;
  parallel::Report fr, br;
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    world.barrier();
    auto t0 = Clock::now();
    fr = parallel::forward(sp, shard.forward_params(nullptr), shard.s_in.f32(), popt);
    device_synchronize(o.backend);
    sp.synchronize(nullptr);
    const double f_ms = since_ms(t0);
    t0 = Clock::now();
    br = parallel::backward(sp, shard.backward_params(nullptr), popt);
    device_synchronize(o.backend);
    sp.synchronize(nullptr);
    const double b_ms = since_ms(t0);
    if (it < o.warmup) continue;
    fwd.push_back(f_ms);
    bwd.push_back(b_ms);
    xchg.push_back(fr.exchange_ms + br.exchange_ms);
  }
  std::vector<double> step(fwd.size());
  for (size_t i = 0; i < fwd.size(); ++i) step[i] = fwd[i] + bwd[i];

  // Max over ranks: the slowest rank sets the step time.
  double mine[6] = {median(fwd),
                    median(bwd),
                    median(step),
                    median(xchg),
                    memory_in_use_bytes(o.backend),
                    static_cast<double>(fr.messages + br.messages)};
  double worst[6];
  MPI_Allreduce(mine, worst, 6, MPI_DOUBLE, MPI_MAX, world.handle());
  RowResult row;
  row.N = 0;
  for (int64_t n : lengths) row.N += n;
  row.n_local_max = *std::max_element(lengths.begin(), lengths.end());
  row.n_local_min = *std::min_element(lengths.begin(), lengths.end());
  row.fwd_ms = worst[0];
  row.bwd_ms = worst[1];
  row.step_ms = worst[2];
  row.exchange_ms = worst[3];
  row.peak_bytes = worst[4];
  row.messages_per_step = static_cast<int>(worst[5]);
  row.state_bytes = shard.state_bytes();
  row.schedule = parallel::schedule_name(fr.schedule);
  if (o.check) {
    const CheckResult c = check_against_unsharded(o, lengths, shard);
    row.checked = true;
    row.rel_err = c.rel_err;
    row.num_wrong = c.num_wrong;
    row.pass = c.pass;
  }
  return row;
}

int run(int argc, char** argv, const comm::MpiEnvironment& env) {
  BenchOptions o;
  if (!parse_bench_options(argc, argv, env.world_rank() == 0, &o)) return 0;
  comm::MpiCommunicator world(MPI_COMM_WORLD, comm::CommOptions{o.timeout_s});
  std::unique_ptr<comm::Communicator> sp = make_comm(o, world, env);
  const RunInfo info = run_info(o, world.size());
  const bool root = world.rank() == 0;
  if (root) print_header(o, info);
  std::vector<RowResult> rows;
  bool all_pass = true;
  for (int64_t N : o.lengths(world.size())) {
    rows.push_back(run_length(o, N, *sp, world));
    all_pass = all_pass && rows.back().pass;
    if (root) print_row(o, info, rows.back());
  }
  if (root && !o.json_path.empty()) write_json(o.json_path, o, info, rows);
  if (root && o.check)
    std::printf("# check: %s\n", all_pass ? "all rows within tolerance" : "FAILED (rows marked !)");
  return all_pass ? 0 : 1;
}

}  // namespace
}  // namespace lightring::launch

int main(int argc, char** argv) {
  lightring::comm::MpiEnvironment env(&argc, &argv);
  try {
    return lightring::launch::run(argc, argv, env);
  } catch (const lightring::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    // A failed rank must not leave its peers waiting: end the whole job.
    MPI_Abort(MPI_COMM_WORLD, 2);
    return 2;
  }
}
