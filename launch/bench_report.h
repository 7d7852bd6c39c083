// Output of lightring-bench: the `#` header, one row per length, and the JSON
// of docs/bench-json.md. Every metric is defined in launch/README.md.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "launch/bench_options.h"

namespace lightring::launch {

// One timed row of the run mode (times in ms; "max" = the maximum over ranks
// of each rank's median over the -n iterations).
struct RowResult {
  int64_t N = 0, n_local_max = 0, n_local_min = 0;
  std::string schedule;                         // the schedule that ran (auto resolved)
  double fwd_ms = 0, bwd_ms = 0, step_ms = 0;   // wall time of the passes, max over ranks
  double xchg_fwd_ms = 0, xchg_bwd_ms = 0;      // communicator op time of one layer's exchange
  double span_fwd_ms = 0, span_bwd_ms = 0;      // the exchange step as seen by the compute stream
  double local_step_ms = -1;                    // same local work, exchange skipped; < 0: not run
  size_t state_bytes = 0;                       // one state message B·H·D·E·4
  int messages_per_step = 0;                    // state messages sent per step, max over ranks
  double peak_bytes = 0, alloc_peak_bytes = 0;  // max over ranks (bench_device.h MemoryProbe)
  int64_t num_docs = 1;  // documents in the packed stream (--docs; 1 without)
  bool checked = false;
  double rel_err = 0;
  int64_t num_wrong = 0;
  bool pass = true;

  // max(0, step_ms − local_step_ms): the part of the exchange the local work did not hide, never
  // negative (a step faster than its local-only baseline is timing noise: nothing exposed);
  // −1 if unknown.
  double exposed_ms() const {
    return local_step_ms < 0 ? -1.0 : std::max(0.0, step_ms - local_step_ms);
  }
  // 1 − exposed / (xchg_fwd + xchg_bwd), clamped to [0, 1]; −1 if unknown or no exchange.
  double overlap() const;
};

struct RunInfo {
  int world_size = 1;
  std::string device, versions, commit, date;
  std::string transport;  // how state messages travel (NcclCommunicator::transport_summary), or ""
  double timeout_s = 0;   // the deadline of every wait for a peer (comm::resolve_timeout)
  double copy_GBps = 0;  // measured copy ceiling (bytes read + written per second); 0: not measured
  // CUDA: device memory in use after each start-up stage, the most over the ranks (bytes; empty
  // on the CPU): "context" (the CUDA context), "communicator" (+ NCCL's init), "connected" (+ the
  // warm-up exchanges of every schedule: NCCL's connections). Rows' peak_GB include all of it.
  std::vector<std::pair<std::string, double>> startup_bytes;
  // The node of every world rank (parallel::discover_nodes); empty before it is measured.
  parallel::NodeLayout nodes;
};

// One JSON object of a "rows" array, keys in insertion order.
class JsonRow {
 public:
  JsonRow& num(const std::string& key, double value);  // NaN / negative sentinel -> use null()
  JsonRow& integer(const std::string& key, int64_t value);
  JsonRow& str(const std::string& key, const std::string& value);
  JsonRow& boolean(const std::string& key, bool value);
  JsonRow& null(const std::string& key);
  std::string dump() const;
  const nlohmann::ordered_json& json() const { return fields_; }

 private:
  nlohmann::ordered_json fields_ = nlohmann::ordered_json::object();  // keys in insertion order
};

// The keys every lightring row shares (impl, P, B, H, D, E, dtype, decay, backend).
JsonRow base_row(const BenchOptions& o, const RunInfo& info);

// Minimum HBM bytes per token per head of docs/algorithm.md §4.
double fwd_bytes_per_token_head(const BenchOptions& o);
double bwd_bytes_per_token_head(const BenchOptions& o);

// The cost model's parameters as the JSON records them ("link": alpha_us, ..., the span).
nlohmann::ordered_json link_json(const BenchOptions& o);

// What auto picks for one state message of this run's shape over the world (run and find-max:
// B·H·D·E·4 bytes), with the costs and the reason (parallel::explain_schedule).
parallel::ScheduleChoice auto_choice(const BenchOptions& o, const RunInfo& info);

void print_header(const BenchOptions& o, const RunInfo& info);
void print_row(const BenchOptions& o, const RunInfo& info, const RowResult& r);
// The three JSON rows (pass fwd, bwd, fwdbwd) of a timed row.
std::vector<JsonRow> json_rows(const BenchOptions& o, const RunInfo& info, const RowResult& r);
// Writes {tool, commit, device, date, world_size, backend, mode, ..., topology, link, auto
// (run and find-max), extra..., rows}
// through nlohmann-json (Debian's nlohmann-json3-dev); `extra` is an object whose keys are added.
void write_json(const std::string& path, const BenchOptions& o, const RunInfo& info,
                const std::vector<JsonRow>& rows,
                const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());
// (A string or any non-object `extra` is a programming error: write_json throws.)

}  // namespace lightring::launch
