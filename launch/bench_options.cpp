// Boost.Program_options parsing of the lightring-bench flags.
#include "launch/bench_options.h"

#include <boost/program_options.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "launch/bench_cli.h"
#include "launch/cli_parse.h"

#ifndef LIGHTRING_GIT_COMMIT
#define LIGHTRING_GIT_COMMIT "unknown"
#endif

namespace lightring::launch {

namespace po = boost::program_options;

namespace {

int64_t parse_int(const std::string& s, const char* flag) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  LR_CHECK(!s.empty() && end && *end == '\0', flag, ": '", s, "' is not an integer");
  LR_CHECK(errno != ERANGE && v <= kMaxGlobalLen, flag, ": '", s, "' is out of range (at most ",
           kMaxGlobalLen, ")");
  return v;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

// "alpha_us,beta_GBps[,gamma_GBps]" into a link model (GB/s = 1e3 bytes/µs).
void parse_link(const std::string& text, bool inter, parallel::LinkModel* link) {
  const std::vector<std::string> f = split(text, ',');
  LR_CHECK(f.size() == (inter ? 2u : 3u) || (!inter && f.size() == 2),
           inter ? "--inter-link takes ALPHA_US,BETA_GBPS"
                 : "--link takes ALPHA_US,BETA_GBPS[,GAMMA_GBPS]",
           " (got '", text, "')");
  const double a = std::atof(f[0].c_str()), b = std::atof(f[1].c_str()) * 1e3;
  LR_CHECK(a >= 0 && b > 0, "link latency must be >= 0 and bandwidth > 0 (got '", text, "')");
  if (inter) {
    link->inter_latency_us = a;
    link->inter_bandwidth_Bpus = b;
    return;
  }
  link->latency_us = a;
  link->bandwidth_Bpus = b;
  if (f.size() == 3) {
    link->combine_Bpus = std::atof(f[2].c_str()) * 1e3;
    LR_CHECK(link->combine_Bpus > 0, "--link: combine bandwidth must be > 0");
  }
}

}  // namespace

std::vector<int64_t> parse_length_list(const std::string& text, double factor, const char* flag) {
  std::vector<int64_t> out;
  const size_t colon = text.find(':');
  if (colon != std::string::npos) {
    const int64_t lo = parse_int(text.substr(0, colon), flag);
    const int64_t hi = parse_int(text.substr(colon + 1), flag);
    LR_CHECK(lo >= 1 && hi >= lo && factor > 1.0, flag,
             ": a sweep LO:HI needs 1 <= LO <= HI and -f > 1 (got '", text, "', -f ", factor, ")");
    for (double n = static_cast<double>(lo); n <= static_cast<double>(hi) * (1 + 1e-9); n *= factor)
      out.push_back(static_cast<int64_t>(n + 0.5));
    return out;
  }
  for (const std::string& item : split(text, ',')) {
    const int64_t v = parse_int(item, flag);
    LR_CHECK(v >= 1, flag, ": every value must be >= 1 (got ", v, ")");
    out.push_back(v);
  }
  LR_CHECK(!out.empty(), flag, ": empty list");
  return out;
}

std::vector<int64_t> BenchOptions::lengths(int world_size) const {
  std::vector<int64_t> out;
  if (!local_lens.empty()) {
    for (int64_t n : local_lens) {
      LR_CHECK(n <= kMaxGlobalLen / world_size, "--local-len ", n, " x ", world_size,
               " ranks is over the longest global length lightring-bench runs (", kMaxGlobalLen,
               " tokens)");
      out.push_back(n * world_size);
    }
    return out;
  }
  LR_CHECK(max_len <= kMaxGlobalLen, "-e ", max_len,
           " is over the longest global length lightring-bench runs (", kMaxGlobalLen, " tokens)");
  for (double n = static_cast<double>(min_len); n <= static_cast<double>(max_len) * (1 + 1e-9);
       n *= factor) {
    out.push_back(static_cast<int64_t>(n + 0.5));
    if (factor <= 1.0) break;
  }
  return out;
}

bool parse_bench_options(int argc, char** argv, bool print_help, BenchOptions* out) {
  std::string dtype, decay = "on", schedule = "auto", backend, local_len, msg_bytes, ranks;
  std::string link, inter_link, docs;
  int64_t min_len = 0, max_len = 0, heads = 0, dim = 0, vdim = 0;
  int ranks_per_node = -1;  // not given: measured (apply_node_layout)
  bool exchange_only = false, find_max = false, model = false, no_baseline = false;
  bool no_ceilings = false;
  po::options_description desc(
      "lightring-bench: sequence-parallel Lightning Attention-2 under mpirun\n"
      "  mpirun -np P lightring-bench [options]   (metrics: launch/README.md)\n\nOptions");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help")
    ("version", "print the version and commit, then exit")
    ("min-len,b", po::value(&min_len), "smallest global sequence length (cpu 2048, cuda 16384)")
    ("max-len,e", po::value(&max_len), "largest global sequence length (cpu 8192, cuda 262144)")
    ("factor,f", po::value(&out->factor)->default_value(2.0), "multiplicative step of the length sweeps")
    ("local-len", po::value(&local_len),
     "weak scaling: tokens per rank, a list 16384,65536 or a sweep LO:HI (step -f); "
     "global length = local-len x P; overrides -b/-e")
    ("batch", po::value(&out->batch)->default_value(1), "batch size B")
    ("heads", po::value(&heads), "heads H (cpu 4, cuda 32)")
    ("dim", po::value(&dim), "qk head dim D (cpu 64, cuda 128)")
    ("vdim", po::value(&vdim), "v head dim E (default: D)")
    ("dtype", po::value(&dtype), "fp32 | bf16 | fp16 (cpu fp32, cuda bf16)")
    ("decay", po::value(&decay)->default_value("on"), "on (TransNormer slopes) | off (s = 0)")
    ("states", po::bool_switch(&out->states),
     "pass a global initial state S0 (rank 0) and G (last rank); with --docs per-document "
     "initial states and final-state gradients (and per-document final states and dS0 out)")
    ("docs", po::value(&docs),
     "packed documents (B = 1): fixed:L | uniform:A..B | lognormal:MEAN[:SIGMA] (SIGMA 1); "
     "lengths drawn per row until its global length, the last one cut to fit")
    ("docs-seed", po::value(&out->docs_seed)->default_value(1), "seed of the --docs lengths")
    ("schedule", po::value(&schedule)->default_value("auto"),
     "ring | allgather | scan | auto, or a comma list (one row per schedule)")
    ("link", po::value(&link),
     "cost model of auto: ALPHA_US,BETA_GBPS[,GAMMA_GBPS] (defaults: cpu 1.5,5,5; cuda 5,50,200)")
    ("inter-link", po::value(&inter_link), "cost model between nodes: ALPHA_US,BETA_GBPS (10,50)")
    ("ranks-per-node", po::value(&ranks_per_node),
     "cost model: consecutive ranks per node (default: measured from the ranks' host names; "
     "0: one level)")
    ("warmup,w", po::value(&out->warmup)->default_value(1), "warmup iterations")
    ("iters,n", po::value(&out->iters)->default_value(3), "timed iterations (median reported)")
    ("check,c", po::bool_switch(&out->check), "compare every rank against the unsharded result")
    ("no-baseline", po::bool_switch(&no_baseline),
     "skip timing the local work without the exchange (no exposed-time column)")
    ("no-ceilings", po::bool_switch(&no_ceilings), "skip measuring the copy bandwidth ceiling")
    ("json", po::value(&out->json_path), "write results as JSON (docs/bench-json.md)")
    ("wide", po::bool_switch(&out->wide), "print every column (default: a table of 120 columns; all in --json)")
    ("quiet,q", po::bool_switch(&out->quiet), "no progress lines during long rows (on a terminal)")
    ("backend", po::value(&backend), "cpu | cuda (default: cuda when a GPU is visible)")
    ("seed", po::value(&out->seed)->default_value(1), "seed of the inputs")
    ("timeout", po::value(&out->timeout_s),
     "seconds a rank waits for a peer before failing (default: $LIGHTRING_COMM_TIMEOUT_S, else 300)")
    ("exchange-only", po::bool_switch(&exchange_only),
     "time only the state exchange (every schedule of --schedule; auto: all three)")
    ("msg-bytes", po::value(&msg_bytes),
     "--exchange-only: state message sizes in bytes, a list or LO:HI (default B*H*D*E*4)")
    ("find-max", po::bool_switch(&find_max),
     "double the global length from -b until an allocation fails; report the longest that ran")
    ("refine", po::value(&out->refine)->default_value(2), "--find-max: bisection steps after the first failure")
    ("max-seconds", po::value(&out->max_seconds)->default_value(240.0),
     "--find-max: start no new length after this many seconds")
    ("model", po::bool_switch(&model), "print the schedule cost model for --model-ranks and exit")
    ("model-ranks", po::value(&ranks)->default_value("2,4,8,16,32,64,128,256,512,1024,2048,4096"),
     "--model: group sizes");
  // clang-format on
  po::variables_map vm;
  if (!parse_command_line(desc, argc, argv, "lightring-bench", print_help, &vm)) return false;
  if (vm.count("version")) {
    if (print_help) std::cout << version_line(LIGHTRING_GIT_COMMIT) << "\n";
    return false;
  }
  LR_CHECK(exchange_only + find_max + model <= 1,
           "--exchange-only, --find-max and --model are exclusive");
  out->mode = exchange_only ? BenchMode::kExchangeOnly
              : find_max    ? BenchMode::kFindMax
              : model       ? BenchMode::kModel
                            : BenchMode::kRun;
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
  out->baseline = !no_baseline;
  out->ceilings = !no_ceilings;
  out->schedules.clear();
  for (const std::string& s : split(schedule, ','))
    out->schedules.push_back(parallel::parse_schedule(s));
  LR_CHECK(!out->schedules.empty(), "--schedule: empty list");
  if (!gpu) {  // shared-memory MPI, host axpy
    out->link.latency_us = 1.5;
    out->link.bandwidth_Bpus = 5e3;
    out->link.combine_Bpus = 5e3;
  }
  if (!link.empty()) parse_link(link, false, &out->link);
  if (!inter_link.empty()) parse_link(inter_link, true, &out->link);
  LR_CHECK(!vm.count("ranks-per-node") || ranks_per_node >= 0,
           "--ranks-per-node must be >= 0 (got ", ranks_per_node, ")");
  out->measure_nodes = !vm.count("ranks-per-node");
  out->link.ranks_per_node = out->measure_nodes ? 0 : ranks_per_node;
  if (!local_len.empty())
    out->local_lens = parse_length_list(local_len, out->factor, "--local-len");
  if (!msg_bytes.empty()) out->msg_bytes = parse_length_list(msg_bytes, out->factor, "--msg-bytes");
  for (int64_t m : out->msg_bytes)
    LR_CHECK(m % 4 == 0, "--msg-bytes: sizes must be multiples of 4 (fp32), got ", m);
  out->model_ranks = parse_length_list(ranks, out->factor, "--model-ranks");
  LR_CHECK(out->min_len >= 1 && out->max_len >= out->min_len, "need 1 <= -b <= -e (got ",
           out->min_len, " and ", out->max_len, ")");
  LR_CHECK(out->max_len <= kMaxGlobalLen, "-e ", out->max_len,
           " is over the longest global length lightring-bench runs (", kMaxGlobalLen, " tokens)");
  LR_CHECK(out->factor >= 1.0, "-f must be >= 1 (got ", out->factor, ")");
  LR_CHECK(out->iters >= 1 && out->warmup >= 0, "-n must be >= 1 and -w >= 0");
  LR_CHECK(out->refine >= 0 && out->max_seconds > 0, "--refine must be >= 0, --max-seconds > 0");
  LR_CHECK(out->batch >= 1 && out->heads >= 1 && out->dim >= 1 && out->vdim >= 1,
           "--batch, --heads, --dim, --vdim must be >= 1");
  LR_CHECK(out->dim <= 256 && out->vdim <= 256, "--dim and --vdim must be <= 256 (got --dim ",
           out->dim, ", --vdim ", out->vdim, ")");
  LR_CHECK(out->batch <= (1 << 20) && out->heads <= (1 << 20),
           "--batch and --heads must be <= 1048576 (got ", out->batch, " and ", out->heads, ")");
  LR_CHECK(!vm.count("timeout") || (std::isfinite(out->timeout_s) && out->timeout_s > 0),
           "--timeout must be a positive number of seconds (got ", out->timeout_s, ")");
  out->docs = parse_docs_spec(docs);
  LR_CHECK(!out->docs.enabled() || out->mode == BenchMode::kRun,
           "--docs applies to the timed run only (not --exchange-only/--find-max/--model)");
  LR_CHECK(!out->docs.enabled() || out->batch == 1,
           "--docs packs the documents into one stream: it needs --batch 1 (got --batch ",
           out->batch, ")");
  LR_CHECK(!(out->check && out->mode != BenchMode::kRun),
           "--check applies to the timed run only (not --exchange-only/--find-max/--model)");
  return true;
}

void apply_node_layout(const parallel::NodeLayout& nodes, int world_size, BenchOptions* o) {
  if (!o->measure_nodes) return;
  LR_CHECK(nodes.num_ranks() == world_size, "apply_node_layout: a layout of ", nodes.num_ranks(),
           " ranks for a world of ", world_size);
  const bool aligned = nodes.num_nodes() > 1 && nodes.blocked() && nodes.ranks_per_node() > 0;
  o->link.ranks_per_node = aligned ? nodes.ranks_per_node() : 0;
  // --model prices hypothetical group sizes: only R applies there.
  if (o->mode != BenchMode::kModel) o->link.span = parallel::group_span(nodes, 0, world_size);
}

}  // namespace lightring::launch
