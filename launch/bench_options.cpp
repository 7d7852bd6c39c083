// Boost.Program_options parsing of the lightring-bench flags.
#include "launch/bench_options.h"

#include <boost/program_options.hpp>
#include <iostream>

#include "kernels/error.h"

namespace lightring::launch {

namespace po = boost::program_options;

std::vector<int64_t> BenchOptions::lengths(int world_size) const {
  if (local_len > 0) return {local_len * world_size};
  std::vector<int64_t> out;
  for (double n = static_cast<double>(min_len); n <= static_cast<double>(max_len) * (1 + 1e-9);
       n *= factor) {
    out.push_back(static_cast<int64_t>(n + 0.5));
    if (factor <= 1.0) break;
  }
  return out;
}

bool parse_bench_options(int argc, char** argv, bool print_help, BenchOptions* out) {
  std::string dtype, decay = "on", schedule = "auto", backend;
  int64_t min_len = 0, max_len = 0, heads = 0, dim = 0, vdim = 0;
  po::options_description desc(
      "lightring-bench: sequence-parallel Lightning Attention-2 under mpirun\n"
      "  mpirun -np P lightring-bench [options]   (metrics: launch/README.md)\n\nOptions");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help")
    ("min-len,b", po::value(&min_len), "smallest global sequence length (cpu 2048, cuda 16384)")
    ("max-len,e", po::value(&max_len), "largest global sequence length (cpu 8192, cuda 262144)")
    ("factor,f", po::value(&out->factor)->default_value(2.0), "multiplicative step of the length sweep")
    ("local-len", po::value(&out->local_len)->default_value(0),
     "weak scaling: tokens per rank (global length = local-len x P); overrides -b/-e")
    ("batch", po::value(&out->batch)->default_value(1), "batch size B")
    ("heads", po::value(&heads), "heads H (cpu 4, cuda 32)")
    ("dim", po::value(&dim), "qk head dim D (cpu 64, cuda 128)")
    ("vdim", po::value(&vdim), "v head dim E (default: D)")
    ("dtype", po::value(&dtype), "fp32 | bf16 | fp16 (cpu fp32, cuda bf16)")
    ("decay", po::value(&decay)->default_value("on"), "on (TransNormer slopes) | off (s = 0)")
    ("states", po::bool_switch(&out->states), "pass a global initial state S0 (rank 0) and G (last rank)")
    ("schedule", po::value(&schedule)->default_value("auto"), "ring | allgather | scan | auto")
    ("warmup,w", po::value(&out->warmup)->default_value(1), "warmup iterations")
    ("iters,n", po::value(&out->iters)->default_value(3), "timed iterations (median reported)")
    ("check,c", po::bool_switch(&out->check), "compare every rank against the unsharded result")
    ("json", po::value(&out->json_path), "write results as JSON (shared/docs/bench-json.md)")
    ("backend", po::value(&backend), "cpu | cuda (default: cuda when a GPU is visible)")
    ("seed", po::value(&out->seed)->default_value(1), "random seed of the inputs")
    ("timeout", po::value(&out->timeout_s)->default_value(300.0),
     "seconds a rank waits for a peer before failing");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    LR_THROW("lightring-bench: ", e.what(), " (see --help)");
  }
  if (vm.count("help")) {
    if (print_help) std::cout << desc << "\n";
    return false;
  }
  if (backend.empty()) backend = kernels::cuda_available() ? "cuda" : "cpu";
  LR_CHECK(backend == "cpu" || backend == "cuda", "--backend must be cpu or cuda (got '", backend,
           "')");
  out->backend = backend == "cuda" ? kernels::Device::kCuda : kernels::Device::kCpu;
  const bool gpu = out->backend == kernels::Device::kCuda;
  out->min_len = vm.count("min-len") ? min_len : (gpu ? 16384 : 2048);
  out->max_len = vm.count("max-len") ? max_len : (gpu ? 262144 : 8192);
  out->heads = vm.count("heads") ? heads : (gpu ? 32 : 4);
  out->dim = vm.count("dim") ? dim : (gpu ? 128 : 64);
  out->vdim = vm.count("vdim") ? vdim : out->dim;
  out->dtype = kernels::parse_dtype(dtype.empty() ? (gpu ? "bf16" : "fp32") : dtype);
  LR_CHECK(decay == "on" || decay == "off", "--decay must be on or off (got '", decay, "')");
  out->decay = decay == "on";
  out->schedule = parallel::parse_schedule(schedule);
  LR_CHECK(out->min_len >= 1 && out->max_len >= out->min_len, "need 1 <= -b <= -e (got ",
           out->min_len, " and ", out->max_len, ")");
  LR_CHECK(out->factor >= 1.0, "-f must be >= 1 (got ", out->factor, ")");
  LR_CHECK(out->iters >= 1 && out->warmup >= 0, "-n must be >= 1 and -w >= 0");
  LR_CHECK(out->batch >= 1 && out->heads >= 1 && out->dim >= 1 && out->vdim >= 1,
           "--batch, --heads, --dim, --vdim must be >= 1");
  return true;
}

}  // namespace lightring::launch
