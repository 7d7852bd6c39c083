// Output of lightring-bench: the `#` header, one row per length, and the JSON
// of shared/docs/bench-json.md. Every metric is defined in launch/README.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "launch/bench_options.h"

namespace lightring::launch {

struct RowResult {
  int64_t N = 0, n_local_max = 0, n_local_min = 0;
  double fwd_ms = 0, bwd_ms = 0, step_ms = 0;  // median over iterations, max over ranks
  double exchange_ms = 0;                      // fwd + bwd exchange, median, max over ranks
  size_t state_bytes = 0;                      // one state message B·H·D·E·4
  int messages_per_step = 0;                   // state messages sent per step, max over ranks
  std::string schedule;                        // the schedule that ran
  double peak_bytes = 0;                       // max over ranks
  bool checked = false;
  double rel_err = 0;
  int64_t num_wrong = 0;
  bool pass = true;
};

struct RunInfo {
  int world_size = 1;
  std::string device, versions, commit, date;
};

// Minimum HBM bytes per token per head of docs/algorithm.md §4.
double fwd_bytes_per_token_head(const BenchOptions& o);
double bwd_bytes_per_token_head(const BenchOptions& o);

void print_header(const BenchOptions& o, const RunInfo& info);
void print_row(const BenchOptions& o, const RunInfo& info, const RowResult& r);
void write_json(const std::string& path, const BenchOptions& o, const RunInfo& info,
                const std::vector<RowResult>& rows);

}  // namespace lightring::launch
