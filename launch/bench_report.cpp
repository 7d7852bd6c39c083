// Table and JSON output of lightring-bench (metrics defined in launch/README.md).
#include "launch/bench_report.h"

#include <cstdio>
#include <fstream>

#include "kernels/error.h"

namespace lightring::launch {

namespace {

double esize(const BenchOptions& o) {
  return static_cast<double>(kernels::dtype_size(o.dtype));
}

// Achieved bandwidth per rank in GB/s: minimum bytes of this rank's shard / time.
double achieved_GBps(const BenchOptions& o, const RowResult& r, double bytes_per_token_head,
                     double ms) {
  const double bytes = bytes_per_token_head * o.batch * o.heads * r.n_local_max;
  return ms > 0 ? bytes / (ms * 1e-3) / 1e9 : 0.0;
}

}  // namespace

double fwd_bytes_per_token_head(const BenchOptions& o) {
  return (2.0 * o.dim + 2.0 * o.vdim) * esize(o);
}
double bwd_bytes_per_token_head(const BenchOptions& o) {
  return (4.0 * o.dim + 3.0 * o.vdim) * esize(o);
}

void print_header(const BenchOptions& o, const RunInfo& info) {
  std::printf("# lightring-bench  world %d  backend %s  device %s\n", info.world_size,
              kernels::device_name(o.backend), info.device.c_str());
  std::printf("# B %ld  H %ld  D %ld  E %ld  dtype %s  decay %s  states %s  schedule %s\n",
              static_cast<long>(o.batch), static_cast<long>(o.heads), static_cast<long>(o.dim),
              static_cast<long>(o.vdim), kernels::dtype_name(o.dtype), o.decay ? "on" : "off",
              o.states ? "on" : "off", parallel::schedule_name(o.schedule));
  std::printf("# warmup %d  iters %d (median)  check %s  commit %s\n", o.warmup, o.iters,
              o.check ? "on" : "off", info.commit.c_str());
  std::printf("# versions: %s\n", info.versions.c_str());
  std::printf(
      "# FLOPs per token per head: fwd ~ 2*blk*(D+E) + 6*D*E, bwd ~ 2-2.5x fwd (algorithm.md 4)\n");
  std::printf("# min bytes per token per head: fwd (2D+2E)*%d = %.0f, bwd (4D+3E)*%d = %.0f\n",
              static_cast<int>(esize(o)), fwd_bytes_per_token_head(o), static_cast<int>(esize(o)),
              bwd_bytes_per_token_head(o));
  std::printf("# %10s %9s %9s %9s %9s %11s %11s %8s %10s %4s %9s %8s %9s %9s %7s\n", "N", "n_local",
              "fwd_ms", "bwd_ms", "step_ms", "tok/s", "tok/s/rank", "GB/s", "state_B", "msgs",
              "xchg_ms", "peak_GB", "schedule", "max_err", "#wrong");
  std::fflush(stdout);
}

void print_row(const BenchOptions& o, const RunInfo& info, const RowResult& r) {
  const double tok_s = r.step_ms > 0 ? o.batch * r.N / (r.step_ms * 1e-3) : 0.0;
  const double gbps =
      achieved_GBps(o, r, fwd_bytes_per_token_head(o) + bwd_bytes_per_token_head(o), r.step_ms);
  char err[32] = "-", wrong[32] = "-";
  if (r.checked) {
    std::snprintf(err, sizeof err, "%.2e", r.rel_err);
    std::snprintf(wrong, sizeof wrong, "%ld%s", static_cast<long>(r.num_wrong), r.pass ? "" : "!");
  }
  std::printf(
      "  %10ld %9ld %9.3f %9.3f %9.3f %11.4g %11.4g %8.2f %10zu %4d %9.3f %8.3f %9s %9s %7s\n",
      static_cast<long>(r.N), static_cast<long>(r.n_local_max), r.fwd_ms, r.bwd_ms, r.step_ms,
      tok_s, tok_s / info.world_size, gbps, r.state_bytes, r.messages_per_step, r.exchange_ms,
      r.peak_bytes / 1e9, r.schedule.c_str(), err, wrong);
  std::fflush(stdout);
}

void write_json(const std::string& path, const BenchOptions& o, const RunInfo& info,
                const std::vector<RowResult>& rows) {
  std::ofstream f(path);
  LR_CHECK(f.good(), "--json: cannot write '", path, "'");
  f << "{\n  \"tool\": \"lightring-bench\",\n  \"commit\": \"" << info.commit << "\",\n"
    << "  \"device\": \"" << info.device << "\",\n  \"date\": \"" << info.date << "\",\n"
    << "  \"world_size\": " << info.world_size << ",\n  \"backend\": \""
    << kernels::device_name(o.backend) << "\",\n  \"ceilings\": {},\n  \"rows\": [";
  bool first = true;
  for (const RowResult& r : rows) {
    struct Pass {
      const char* name;
      double ms, bytes_per_token_head;
    } passes[3] = {
        {"fwd", r.fwd_ms, fwd_bytes_per_token_head(o)},
        {"bwd", r.bwd_ms, bwd_bytes_per_token_head(o)},
        {"fwdbwd", r.step_ms, fwd_bytes_per_token_head(o) + bwd_bytes_per_token_head(o)}};
    for (const Pass& p : passes) {
      const double tok_s = p.ms > 0 ? o.batch * r.N / (p.ms * 1e-3) : 0.0;
      f << (first ? "\n" : ",\n") << "    {\"impl\": \"lightring\", \"schedule\": \"" << r.schedule
        << "\", \"P\": " << info.world_size << ", \"B\": " << o.batch << ", \"H\": " << o.heads
        << ", \"N\": " << r.N << ", \"n_local\": " << r.n_local_max << ", \"D\": " << o.dim
        << ", \"E\": " << o.vdim << ", \"dtype\": \"" << kernels::dtype_name(o.dtype)
        << "\", \"decay\": " << (o.decay ? "true" : "false") << ", \"pass\": \"" << p.name
        << "\", \"ms\": " << p.ms << ", \"tokens_per_s\": " << tok_s
        << ", \"achieved_TBps\": " << achieved_GBps(o, r, p.bytes_per_token_head, p.ms) / 1e3
        << ", \"peak_GB\": " << r.peak_bytes / 1e9 << ", \"rel_err\": ";
      if (r.checked) {
        f << r.rel_err;
      } else {
        f << "null";
      }
      f << ", \"num_wrong\": " << (r.checked ? std::to_string(r.num_wrong) : "null")
        << ", \"exchange_ms\": " << r.exchange_ms << ", \"state_bytes\": " << r.state_bytes
        << ", \"backend\": \"" << kernels::device_name(o.backend) << "\"}";
      first = false;
    }
  }
  f << "\n  ]\n}\n";
}

}  // namespace lightring::launch
