// --exchange-only, --find-max and --model of lightring-bench.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "launch/bench_check.h"
#include "launch/bench_cli.h"
#include "launch/bench_run.h"
#include "launch/bench_shard.h"
#include "parallel/exchange.h"

namespace lightring::launch {

namespace {

using Clock = std::chrono::steady_clock;
using parallel::Schedule;

int ceil_log2(int p) {
  int r = 0;
  while ((1 << r) < p) ++r;
  return r;
}

// Dependent steps on the critical path of one exchange, and the bytes they carry.
int critical_steps(Schedule s, int P) {
  switch (s) {
    case Schedule::kRing:
      return P - 1;
    case Schedule::kAllGather:
      return 1;
    case Schedule::kScan:
      return ceil_log2(P);
    case Schedule::kAuto:
      break;
  }
  return 0;
}
double critical_bytes(Schedule s, int P, double m) {
  return s == Schedule::kAllGather ? (P - 1) * m : critical_steps(s, P) * m;
}

void write_find_max(const BenchOptions& o, const RunInfo& info, const std::vector<JsonRow>& rows,
                    int64_t ok_N, int64_t fail_N, int P, const std::string& stopped) {
  if (o.json_path.empty()) return;
  nlohmann::ordered_json extra;
  extra["find_max"] = {
      {"N", ok_N}, {"n_local", ok_N / P}, {"first_failure_N", fail_N}, {"stopped", stopped}};
  write_json(o.json_path, o, info, rows, extra);
}

}  // namespace

int run_exchange_only(BenchContext& ctx) {
  const BenchOptions& o = ctx.o;
  const int P = ctx.sp.size();
  const bool root = ctx.world.rank() == 0;
  const bool cuda = o.backend == kernels::Device::kCuda;
  std::vector<int64_t> sizes = o.msg_bytes;
  if (sizes.empty()) sizes.push_back(o.batch * o.heads * o.dim * o.vdim * 4);
  std::vector<Schedule> schedules;
  for (Schedule s : o.schedules) {
    if (s == Schedule::kAuto) {
      schedules.insert(schedules.end(), {Schedule::kRing, Schedule::kAllGather, Schedule::kScan});
    } else {
      schedules.push_back(s);
    }
  }
  if (root)
    std::printf("# %5s %10s %9s %5s %10s %10s %10s %10s %9s %10s %6s\n", "P", "msg_B", "schedule",
                "steps", "us", "min_us", "gpu_us", "step_us", "GB/s", "model_us", "auto");
  std::vector<JsonRow> json;
  for (int64_t m : sizes) {
    const size_t count = static_cast<size_t>(m / 4);
    Buffer x(o.backend, count * sizeof(float)), excl(o.backend, count * sizeof(float));
    fill_f32(x, count, o.seed);
    // Shaped like real states: heads of D·E = 16384 values when the size allows
    // (the combine kernel parallelises over heads), each with decay.
    const int64_t per_head = count % 16384 == 0 ? 16384 : static_cast<int64_t>(count);
    const int64_t heads = static_cast<int64_t>(count) / per_head;
    Buffer decay(o.backend, heads * sizeof(float));
    const std::vector<float> rates(heads, 0.01f);
    decay.upload(rates.data(), rates.size() * sizeof(float));
    parallel::ScanSpec spec;
    spec.device = o.backend;
    spec.stream = ctx.stream.get();
    spec.batch = 1;
    spec.heads = heads;
    spec.per_head = per_head;
    spec.decay = decay.f32();
    spec.lengths.assign(P, 1);
    const Schedule chosen = parallel::choose_schedule(Schedule::kAuto, P, m, o.link);
    for (Schedule s : schedules) {
      EventPair ev(o.backend);
      std::vector<double> host, gpu;
      set_activity(std::string("timing the ") + parallel::schedule_name(s) + " exchange of " +
                   std::to_string(m) + "-byte messages");
      for (int it = 0; it < o.warmup + o.iters; ++it) {
        spec.reverse = it % 2 == 1;  // alternate directions, as forward and backward do
        ctx.world.barrier();
        const auto t0 = Clock::now();
        if (cuda) kernels::record_event(o.backend, ev.begin(), spec.stream);
        parallel::exclusive_scan(ctx.sp, s, spec, x.f32(), excl.f32());
        if (cuda) kernels::record_event(o.backend, ev.end(), spec.stream);
        ctx.stream.synchronize();
        ctx.sp.synchronize(spec.stream);
        const double ms = since_ms(t0);
        if (it < o.warmup) continue;
        host.push_back(ms);
        gpu.push_back(cuda ? ev.elapsed_ms() : ms);
      }
      const std::vector<double> h = max_over_ranks(ctx.world, host);
      const std::vector<double> g = max_over_ranks(ctx.world, gpu);
      const double us = 1e3 * median(h), gpu_us = 1e3 * median(g);
      const double min_us = 1e3 * *std::min_element(h.begin(), h.end());
      const int steps = critical_steps(s, P);
      const double step_us = steps > 0 ? gpu_us / steps : 0.0;
      const double gbps = gpu_us > 0 ? critical_bytes(s, P, m) / (gpu_us * 1e3) : 0.0;
      const double model_us = parallel::schedule_cost_us(s, P, m, o.link);
      if (root)
        std::printf("  %5d %10ld %9s %5d %10.2f %10.2f %10.2f %10.2f %9.3f %10.2f %6s\n", P,
                    static_cast<long>(m), parallel::schedule_name(s), steps, us, min_us, gpu_us,
                    step_us, gbps, model_us, s == chosen ? "*" : "");
      JsonRow row = base_row(o, ctx.info);
      row.str("schedule", parallel::schedule_name(s))
          .str("pass", "exchange")
          .integer("msg_bytes", m)
          .integer("steps", steps)
          .num("us", us)
          .num("min_us", min_us)
          .num("gpu_us", gpu_us)
          .num("step_us", step_us)
          .num("algbw_GBps", gbps)
          .num("model_us", model_us)
          .boolean("auto_choice", s == chosen)
          .integer("iters", o.iters);
      json.push_back(row);
    }
  }
  if (root && !o.json_path.empty()) write_json(o.json_path, o, ctx.info, json);
  return 0;
}

int run_find_max(BenchContext& ctx) {
  const BenchOptions& o = ctx.o;
  const int P = ctx.sp.size();
  const bool root = ctx.world.rank() == 0;
  const auto start = Clock::now();
  int64_t ok_N = 0, fail_N = 0;
  std::vector<JsonRow> json;
  std::string stop_reason = "bisection done";
  if (root)
    std::printf(
        "# find-max: global length doubles from %ld; a failed allocation on any rank "
        "stops it on every rank\n# %11s %10s %8s %10s %8s  %s\n",
        static_cast<long>(o.min_len), "N", "n_local", "status", "step_ms", "peak_GB", "message");
  // Next length to try: doubling until the first failure, then bisection.
  int refine_left = o.refine;
  int64_t N = std::max<int64_t>(o.min_len, P);
  while (true) {
    if (std::chrono::duration<double>(Clock::now() - start).count() > o.max_seconds) {
      stop_reason = "time limit (--max-seconds)";
      break;
    }
    const std::vector<int64_t> lengths = split_lengths(N, P);
    bool ok = true;
    std::string message;
    RowResult row;
    try {
      BenchOptions one = o;  // one untimed warm-up and one timed iteration, no baseline
      one.warmup = 0;
      one.iters = 1;
      one.baseline = false;
      one.check = false;
      BenchContext c1{one, ctx.world, ctx.sp, ctx.stream, ctx.info};
      ProgressTicker progress(root && progress_wanted(o.quiet));
      row = run_row(c1, lengths, o.schedules.front());
    } catch (const CommError&) {
      throw;  // a peer is gone: the agreement below could not complete
    } catch (const Error& e) {
      ok = false;
      message = e.what();
    }
    // Every phase of run_row that can fail locally is followed by a collective
    // that all ranks reach (the pass agreements, MPI reductions); a rank that
    // threw reaches this one, so the decision is the same on every rank.
    const bool all_ok = all_ranks(ctx.world, ok);
    const std::string status = all_ok ? "ok" : (ok ? "peer-failed" : "failed");
    // The table keeps to 120 columns: the message without its source location, cut to fit
    // (the JSON row has more of it).
    std::string shown = user_message(message);
    const std::string prefix = "lightring error ";
    if (shown.compare(0, prefix.size(), prefix) == 0) shown.erase(0, prefix.size());
    if (shown.size() > 65) shown = shown.substr(0, 62) + "...";
    if (root || !ok)
      std::printf("  %11ld %10ld %8s %10.3f %8.2f  %s\n", static_cast<long>(N),
                  static_cast<long>(lengths[ctx.sp.rank()]), status.c_str(), row.step_ms,
                  row.peak_bytes / 1e9, shown.c_str());
    std::fflush(stdout);
    JsonRow j = base_row(o, ctx.info);
    j.str("schedule", parallel::schedule_name(o.schedules.front()))
        .str("pass", "find-max")
        .integer("N", N)
        .integer("n_local", lengths.back())
        .str("status", all_ok ? "ok" : "failed");
    if (all_ok) {
      j.num("ms", row.step_ms).num("peak_GB", row.peak_bytes / 1e9);
    } else {
      j.null("ms").str("message", message.substr(0, 200));
    }
    json.push_back(j);
    if (all_ok) {
      ok_N = std::max(ok_N, N);
    } else {
      fail_N = fail_N ? std::min(fail_N, N) : N;
    }
    // Rewritten after every length: a run cut short by a timeout keeps its results.
    if (root) write_find_max(o, ctx.info, json, ok_N, fail_N, P, "in progress");
    if (ctx.sp.aborted()) {
      stop_reason = "communicator aborted";
      break;
    }
    if (fail_N == 0) {
      N *= 2;
      continue;
    }
    if (ok_N == 0) {
      stop_reason = "the first length failed";
      break;
    }
    if (refine_left-- <= 0 || fail_N - ok_N <= P) break;
    N = ok_N + (fail_N - ok_N) / 2;
  }
  if (root) {
    // Two lines of at most 120 columns (the stop reason on its own).
    const std::string failure = fail_N > 0 ? std::to_string(fail_N) : "none";
    std::printf(
        "# find-max: longest N that ran forward+backward: %ld (%ld per rank, %d ranks); first "
        "failure: %s\n# find-max stopped: %s\n",
        static_cast<long>(ok_N), static_cast<long>(ok_N / P), P, failure.c_str(),
        stop_reason.c_str());
    write_find_max(o, ctx.info, json, ok_N, fail_N, P, stop_reason);
  }
  return ok_N > 0 ? 0 : 1;
}

int print_model(const BenchOptions& o, const RunInfo& info, bool root) {
  std::vector<int64_t> sizes = o.msg_bytes;
  if (sizes.empty()) sizes.push_back(o.batch * o.heads * o.dim * o.vdim * 4);
  std::vector<JsonRow> json;
  if (root)
    std::printf("# %6s %10s %12s %12s %12s %9s\n", "P", "msg_B", "ring_us", "allgather_us",
                "scan_us", "auto");
  for (int64_t m : sizes) {
    for (int64_t P : o.model_ranks) {
      const int p = static_cast<int>(P);
      const double ring = parallel::schedule_cost_us(Schedule::kRing, p, m, o.link);
      const double ag = parallel::schedule_cost_us(Schedule::kAllGather, p, m, o.link);
      const double scan = parallel::schedule_cost_us(Schedule::kScan, p, m, o.link);
      const Schedule pick = parallel::choose_schedule(Schedule::kAuto, p, m, o.link);
      if (root)
        std::printf("  %6ld %10ld %12.1f %12.1f %12.1f %9s\n", static_cast<long>(P),
                    static_cast<long>(m), ring, ag, scan, parallel::schedule_name(pick));
      JsonRow row;
      row.str("pass", "model")
          .integer("P", P)
          .integer("msg_bytes", m)
          .num("ring_us", ring)
          .num("allgather_us", ag)
          .num("scan_us", scan)
          .str("auto", parallel::schedule_name(pick));
      json.push_back(row);
    }
  }
  // write_json records the link (link_json), which the rows were priced with.
  if (root && !o.json_path.empty()) write_json(o.json_path, o, info, json);
  return 0;
}

}  // namespace lightring::launch
