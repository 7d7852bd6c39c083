// Command line of lightring-bench (flags in the spirit of nccl-tests).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "parallel/sequence_parallel.h"

namespace lightring::launch {

struct BenchOptions {
  int64_t min_len = 0, max_len = 0;  // -b / -e: global sequence lengths swept
  double factor = 2.0;               // -f: multiplicative step of the sweep
  int64_t local_len = 0;             // --local-len: weak scaling (N = local_len·P); 0: off
  int64_t batch = 1, heads = 0, dim = 0, vdim = 0;
  kernels::DType dtype = kernels::DType::kFloat32;
  bool decay = true;
  bool states = false;  // --states: global S0 on rank 0 and G on the last rank
  parallel::Schedule schedule = parallel::Schedule::kAuto;
  int warmup = 1, iters = 3;
  bool check = false;
  std::string json_path;
  kernels::Device backend = kernels::Device::kCpu;
  uint64_t seed = 1;
  double timeout_s = 300.0;

  // Global lengths of the rows, in order.
  std::vector<int64_t> lengths(int world_size) const;
};

// Parses argv. Defaults depend on the backend (small on the CPU so that
// `mpirun -np 4 lightring-bench --backend cpu --check` takes well under a
// minute on 2 cores; the reference shapes of docs/gpu-machine.md on CUDA).
// Returns false after printing --help; throws lightring::Error on bad flags.
bool parse_bench_options(int argc, char** argv, bool print_help, BenchOptions* out);

}  // namespace lightring::launch
