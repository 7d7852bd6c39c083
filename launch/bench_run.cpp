// The timed rows of lightring-bench: forward + backward per iteration, the
// exchange timed on the communicator's stream and on the compute stream, the
// same local work without the exchange (the baseline of the exposed time),
// peak memory, and the optional --check.
#include "launch/bench_run.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <exception>
#include <memory>
#include <numeric>
#include <string>

#include "core/error.h"
#include "launch/bench_check.h"
#include "launch/bench_cli.h"
#include "launch/bench_docs.h"
#include "launch/bench_shard.h"
#include "parallel/exchange.h"
#include "parallel/sequence_parallel.h"

namespace lightring::launch {

namespace {

using Clock = std::chrono::steady_clock;

// The local work of parallel::forward + parallel::backward with the exchange
// (and the shape agreement) skipped: phase 1 of kernels::ForwardPass, its pair
// where a peer consumes it (every rank but the last), phase 2 from the same
// S_in; the mirror image in backward (pair on every rank but the first). Same
// buffers, same kernels, same stream. With documents a pair is computed where parallel/ computes
// it: not on a rank that ends its last document (forward) or starts one at its first token
// (backward).
struct LocalOnly {
  Shard& shard;
  Buffer ds_out;
  int rank, size;

  LocalOnly(Shard& s, int r, int P)
      : shard(s), ds_out(s.device, s.state_bytes()), rank(r), size(P) {}

  void forward(void* stream) {
    const kernels::ForwardParams p = shard.forward_params(stream);
    kernels::ForwardPass pass(p);
    if (rank != size - 1 && !(p.docs.enabled() && p.docs.ends)) pass.local_state();
    pass.finish(rank == 0 ? p.initial_state : shard.s_in.f32(), p.final_state);
  }
  void backward(void* stream) {
    const kernels::BackwardParams p = shard.backward_params(stream);
    kernels::BackwardPass pass(p);
    if (rank != 0 && !(p.docs.enabled() && !p.docs.continues)) pass.local_state();
    pass.finish(rank == size - 1 ? p.d_final_state : ds_out.f32(), p.d_initial_state);
  }
};

}  // namespace

double since_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> x) {
  if (x.empty()) return 0.0;
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

std::vector<int64_t> split_lengths(int64_t N, int P) {
  std::vector<int64_t> len(P, N / P);
  for (int64_t i = 0; i < N % P; ++i) len[P - 1 - i] += 1;
  return len;
}

void connect_peers(BenchContext& ctx) {
  const BenchOptions& o = ctx.o;
  if (ctx.sp.size() == 1) return;
  parallel::ScanSpec spec;
  spec.device = o.backend;
  spec.stream = ctx.stream.get();
  spec.batch = o.batch;
  spec.heads = o.heads;
  spec.per_head = o.dim * o.vdim;
  spec.lengths.assign(ctx.sp.size(), 1);
  const size_t count = static_cast<size_t>(o.batch * o.heads * o.dim * o.vdim);
  Buffer x(o.backend, count * sizeof(float)), excl(o.backend, count * sizeof(float));
  // The schedules the timed rows run (auto resolved as the passes will resolve it); every
  // schedule in the other modes. NCCL connects a schedule's channels on its first use and keeps
  // their buffers: warming up unused schedules would add their memory to every row's peak
  // (a cost only where NCCL's kernels carry the exchange; bench/NOTES.md has the measurement).
  std::vector<parallel::Schedule> used;
  const std::vector<parallel::Schedule> all = {
      parallel::Schedule::kRing, parallel::Schedule::kAllGather, parallel::Schedule::kScan};
  for (parallel::Schedule s : o.mode == BenchMode::kRun ? o.schedules : all) {
    s = parallel::choose_schedule(s, ctx.sp.size(), count * sizeof(float), o.link);
    if (std::find(used.begin(), used.end(), s) == used.end()) used.push_back(s);
  }
  for (parallel::Schedule s : used) {
    for (bool reverse : {false, true}) {
      spec.reverse = reverse;
      parallel::exclusive_scan(ctx.sp, s, spec, x.f32(), excl.f32());
    }
  }
  ctx.stream.synchronize();
  ctx.sp.synchronize(ctx.stream.get());
}

RowResult run_row(BenchContext& ctx, const std::vector<int64_t>& lengths,
                  parallel::Schedule schedule) {
  const BenchOptions& o = ctx.o;
  comm::Communicator& sp = ctx.sp;
  const int P = sp.size(), r = sp.rank();
  void* stream = ctx.stream.get();
  MemoryProbe probe(o.backend);
  probe.begin_row();
  std::unique_ptr<Shard> owned;
  set_activity("allocating a shard of " + std::to_string(lengths[r]) + " tokens");
  // --docs: the row's global offsets, the same on every rank (bench_docs.h).
  const std::vector<int64_t> cu = document_offsets(
      o.docs, std::accumulate(lengths.begin(), lengths.end(), int64_t{0}), o.docs_seed);
  agreed(ctx.world, "allocating the shard", [&] {
    owned = std::make_unique<Shard>(
        o.backend, ShardShape{o.batch, o.heads, lengths[r], o.dim, o.vdim, o.dtype});
    fill_shard_inputs(o, r, P, *owned);
    attach_documents(o, cu, std::accumulate(lengths.begin(), lengths.begin() + r, int64_t{0}),
                     *owned);
  });
  Shard& shard = *owned;
  EventPair ev_fwd(o.backend), ev_bwd(o.backend);
  parallel::Options fopt, bopt;
  fopt.schedule = bopt.schedule = schedule;
  fopt.link = bopt.link = o.link;
  fopt.exchange_begin_event = ev_fwd.begin();
  fopt.exchange_end_event = ev_fwd.end();
  bopt.exchange_begin_event = ev_bwd.begin();
  bopt.exchange_end_event = ev_bwd.end();
  const bool cuda = o.backend == kernels::Device::kCuda;

  std::vector<double> fwd, bwd, step, xf, xb, spf, spb;
  parallel::Report fr, br;
  sp.set_op_timing(true);
  const std::string row_name =
      "in the row N=" +
      std::to_string(std::accumulate(lengths.begin(), lengths.end(), int64_t{0})) + " (" +
      parallel::schedule_name(schedule) + ")";
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    set_activity(row_name + ", iteration " + std::to_string(it + 1) + " of " +
                 std::to_string(o.warmup + o.iters) + (it < o.warmup ? " (warm-up)" : " (timed)"));
    ctx.world.barrier();
    Clock::time_point t0;
    double f_ms = 0, b_ms = 0, xf_ms = 0, xb_ms = 0;
    agreed(ctx.world, "forward", [&] {
      t0 = Clock::now();
      fr = parallel::forward(sp, shard.forward_params(stream), shard.s_in.f32(), fopt);
      ctx.stream.synchronize();
      sp.synchronize(stream);
      f_ms = since_ms(t0);
      xf_ms = sp.take_op_time_ms();
    });
    agreed(ctx.world, "backward", [&] {
      t0 = Clock::now();
      br = parallel::backward(sp, shard.backward_params(stream), bopt);
      ctx.stream.synchronize();
      sp.synchronize(stream);
      b_ms = since_ms(t0);
      xb_ms = sp.take_op_time_ms();
    });
    if (it < o.warmup) continue;
    fwd.push_back(f_ms);
    bwd.push_back(b_ms);
    step.push_back(f_ms + b_ms);
    xf.push_back(xf_ms);
    xb.push_back(xb_ms);
    spf.push_back(cuda ? ev_fwd.elapsed_ms() : fr.exchange_ms);
    spb.push_back(cuda ? ev_bwd.elapsed_ms() : br.exchange_ms);
  }
  sp.set_op_timing(false);

  // --check compares the outputs of the last timed iteration, before the
  // baseline below overwrites them (it runs backward with a zero dS_out).
  CheckResult check;
  set_activity(row_name + ", --check (gathering every shard's outputs on rank 0)");
  if (o.check) check = check_against_unsharded(ctx.world, o, lengths, cu, shard);

  std::vector<double> local;
  set_activity(row_name + ", the local-only baseline");
  if (o.baseline) {
    LocalOnly lo(shard, r, P);
    for (int it = 0; it < o.warmup + o.iters; ++it) {
      set_activity(row_name + ", the local-only baseline, iteration " + std::to_string(it + 1) +
                   " of " + std::to_string(o.warmup + o.iters));
      ctx.world.barrier();
      double ms = 0;
      agreed(ctx.world, "the local-only baseline", [&] {
        const auto t0 = Clock::now();
        lo.forward(stream);
        ctx.stream.synchronize();
        lo.backward(stream);
        ctx.stream.synchronize();
        ms = since_ms(t0);
      });
      if (it >= o.warmup) local.push_back(ms);
    }
  }

  // Max over ranks: the slowest rank sets the step time.
  double mine[12] = {median(fwd),
                     median(bwd),
                     median(step),
                     median(xf),
                     median(xb),
                     median(spf),
                     median(spb),
                     o.baseline ? median(local) : -1.0,
                     probe.peak_bytes(),
                     probe.alloc_peak_bytes(),
                     static_cast<double>(fr.messages + br.messages),
                     0.0};
  const std::vector<double> worst = max_over_ranks(ctx.world, std::vector<double>(mine, mine + 12));
  RowResult row;
  for (int64_t n : lengths) row.N += n;
  row.n_local_max = *std::max_element(lengths.begin(), lengths.end());
  row.n_local_min = *std::min_element(lengths.begin(), lengths.end());
  row.fwd_ms = worst[0];
  row.bwd_ms = worst[1];
  row.step_ms = worst[2];
  row.xchg_fwd_ms = worst[3];
  row.xchg_bwd_ms = worst[4];
  row.span_fwd_ms = worst[5];
  row.span_bwd_ms = worst[6];
  row.local_step_ms = worst[7];
  row.peak_bytes = worst[8];
  row.alloc_peak_bytes = worst[9];
  row.messages_per_step = static_cast<int>(worst[10]);
  row.state_bytes = shard.state_bytes();
  row.schedule = parallel::schedule_name(fr.schedule);
  row.num_docs = static_cast<int64_t>(cu.size()) - 1;
  if (o.check) {
    row.checked = true;
    row.rel_err = check.rel_err;
    row.num_wrong = check.num_wrong;
    row.pass = check.pass;
  }
  return row;
}

int run_timed(BenchContext& ctx) {
  const BenchOptions& o = ctx.o;
  const bool root = ctx.world.rank() == 0;
  const int P = ctx.sp.size();
  std::vector<JsonRow> json;
  bool all_pass = true;
  for (parallel::Schedule s : o.schedules) {
    for (int64_t N : o.lengths(P)) {
      const std::vector<int64_t> lengths =
          o.local_lens.empty() ? split_lengths(N, P) : std::vector<int64_t>(P, N / P);
      LR_CHECK(*std::min_element(lengths.begin(), lengths.end()) >= 1, "global length ", N,
               " is shorter than the number of ranks (", P, ")");
      // Every buffer of a shard is far below 2^62 bytes, so no size computation overflows.
      const double shard_bytes = static_cast<double>(o.batch) * o.heads *
                                 static_cast<double>(lengths.back()) * std::max(o.dim, o.vdim) *
                                 kernels::dtype_size(o.dtype);
      LR_CHECK(shard_bytes < 0x1p62, "a shard of ", lengths.back(), " tokens at B = ", o.batch,
               ", H = ", o.heads, " and D = ", std::max(o.dim, o.vdim), " would take ", shard_bytes,
               " bytes per tensor; use shorter lengths");
      RowResult row;
      {
        // Rank 0, on a terminal: a "# ..." line every 2 s while the row runs.
        ProgressTicker progress(root && progress_wanted(o.quiet));
        row = run_row(ctx, lengths, s);
      }
      all_pass = all_pass && row.pass;
      if (root) print_row(o, ctx.info, row);
      for (JsonRow& j : json_rows(o, ctx.info, row)) json.push_back(std::move(j));
    }
  }
  if (root && !o.json_path.empty()) write_json(o.json_path, o, ctx.info, json);
  if (root && o.check)
    std::printf("# check: %s\n", all_pass ? "all rows within tolerance" : "FAILED (rows marked !)");
  return all_pass ? 0 : 1;
}

}  // namespace lightring::launch
