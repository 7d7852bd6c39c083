// Command line of lightring-bench (flags in the spirit of nccl-tests).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "launch/bench_docs.h"
#include "parallel/sequence_parallel.h"
#include "parallel/topology.h"

namespace lightring::launch {

enum class BenchMode {
  kRun,           // time (and check) forward + backward, one row per length and schedule
  kExchangeOnly,  // --exchange-only: time the state exchange alone per schedule and message size
  kFindMax,       // --find-max: double the global length until an allocation fails
  kModel,         // --model: print the cost model of the schedules (parallel::schedule_cost_us)
};

// The longest global length a row may have (2^40 tokens): far beyond any machine, and small
// enough that B·H·N·D element counts of valid options stay far from int64 overflow.
constexpr int64_t kMaxGlobalLen = int64_t{1} << 40;

struct BenchOptions {
  BenchMode mode = BenchMode::kRun;
  int64_t min_len = 0, max_len = 0;  // -b / -e: global sequence lengths swept
  double factor = 2.0;               // -f: multiplicative step of the sweep
  std::vector<int64_t> local_lens;   // --local-len: weak scaling rows (N = n_local·P); empty: off
  int64_t batch = 1, heads = 0, dim = 0, vdim = 0;
  kernels::DType dtype = kernels::DType::kFloat32;
  bool decay = true;
  bool states = false;     // --states: global S0 on rank 0 and G on the last rank (with --docs:
                           // per-document S0 and G, per-document final states and dS0 out)
  DocsSpec docs;           // --docs: packed documents in every timed row (off: one sequence)
  uint64_t docs_seed = 1;  // --docs-seed: the document lengths drawn
  std::vector<parallel::Schedule> schedules{parallel::Schedule::kAuto};
  parallel::LinkModel link;   // the cost model auto uses (--link, --inter-link, --ranks-per-node)
  bool measure_nodes = true;  // no --ranks-per-node: apply_node_layout sets R and the span
  int warmup = 1, iters = 3;
  bool check = false;
  bool baseline = true;  // time the same local work with the exchange skipped (exposed time)
  bool ceilings = true;  // measure the copy bandwidth ceiling
  std::string json_path;
  bool wide = false;   // --wide: every column of the table (default: the 120-column subset)
  bool quiet = false;  // --quiet: no progress lines during long rows
  kernels::Device backend = kernels::Device::kCpu;
  uint64_t seed = 1;
  double timeout_s = 0.0;  // --timeout; 0: not given (comm::resolve_timeout decides)
  // --exchange-only: state message sizes in bytes (empty: B·H·D·E·4).
  std::vector<int64_t> msg_bytes;
  // --find-max: the search starts at -b (global) and doubles; after the first
  // failure it bisects `refine` times; it stops starting new lengths after
  // `max_seconds`.
  int refine = 2;
  double max_seconds = 240.0;
  // --model: group sizes to evaluate.
  std::vector<int64_t> model_ranks;

  // Global lengths of the rows, in order (kRun).
  std::vector<int64_t> lengths(int world_size) const;
};

// "a,b,c" -> {a, b, c}; "lo:hi" -> lo, lo·f, lo·f², … <= hi (f = factor). Throws on bad input.
std::vector<int64_t> parse_length_list(const std::string& text, double factor, const char* flag);

// Parses argv. Defaults depend on the backend (small on the CPU so that
// `mpirun -np 4 lightring-bench --backend cpu --check` takes well under a
// minute on 2 cores; on CUDA the reference shape B=1 H=32 D=E=128 bf16).
// Returns false after printing --help or --version; throws lightring::Error on bad flags.
bool parse_bench_options(int argc, char** argv, bool print_help, BenchOptions* out);

// Without --ranks-per-node, the cost model follows the job's measured node layout (every rank
// passes the same one, parallel::discover_nodes): R = its ranks per node when the job spans
// several nodes in blocks of equal size (0 otherwise), and outside --model the span of the
// benchmark's one SP group (all world_size ranks), which prices uneven and round-robin
// placements too. With --ranks-per-node the flag's aligned blocks stand, measured or not.
void apply_node_layout(const parallel::NodeLayout& nodes, int world_size, BenchOptions* o);

}  // namespace lightring::launch
