// Table and JSON output of lightring-bench (metrics defined in launch/README.md).
#include "launch/bench_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

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

const char* mode_name(BenchMode m) {
  switch (m) {
    case BenchMode::kRun:
      return "run";
    case BenchMode::kExchangeOnly:
      return "exchange-only";
    case BenchMode::kFindMax:
      return "find-max";
    case BenchMode::kModel:
      return "model";
  }
  return "?";
}

// Whether the header and JSON report auto's decision: a run of one state size that asks for it.
bool reports_auto(const BenchOptions& o) {
  if (o.mode != BenchMode::kRun && o.mode != BenchMode::kFindMax) return false;
  return std::find(o.schedules.begin(), o.schedules.end(), parallel::Schedule::kAuto) !=
         o.schedules.end();
}

}  // namespace

nlohmann::ordered_json link_json(const BenchOptions& o) {
  nlohmann::ordered_json link;
  link["alpha_us"] = o.link.latency_us;
  link["beta_GBps"] = o.link.bandwidth_Bpus / 1e3;
  link["gamma_GBps"] = o.link.combine_Bpus / 1e3;
  link["ranks_per_node"] = o.link.ranks_per_node;
  link["ranks_per_node_from"] = o.measure_nodes ? "measured" : "--ranks-per-node";
  link["inter_alpha_us"] = o.link.inter_latency_us;
  link["inter_beta_GBps"] = o.link.inter_bandwidth_Bpus / 1e3;
  if (o.link.span.nodes > 0) {
    link["span_nodes"] = o.link.span.nodes;
    link["span_crossings"] = o.link.span.crossings;
  } else {
    link["span_nodes"] = nullptr;
    link["span_crossings"] = nullptr;
  }
  return link;
}

parallel::ScheduleChoice auto_choice(const BenchOptions& o, const RunInfo& info) {
  const size_t state_bytes = static_cast<size_t>(o.batch * o.heads * o.dim * o.vdim) * 4;
  return parallel::explain_schedule(parallel::Schedule::kAuto, info.world_size, state_bytes,
                                    o.link);
}

double RowResult::overlap() const {
  const double xchg = xchg_fwd_ms + xchg_bwd_ms;
  if (local_step_ms < 0 || xchg <= 0) return -1.0;
  return std::clamp(1.0 - exposed_ms() / xchg, 0.0, 1.0);
}

JsonRow& JsonRow::num(const std::string& key, double value) {
  if (!std::isfinite(value)) return null(key);
  fields_[key] = value;
  return *this;
}
JsonRow& JsonRow::integer(const std::string& key, int64_t value) {
  fields_[key] = value;
  return *this;
}
JsonRow& JsonRow::str(const std::string& key, const std::string& value) {
  fields_[key] = value;
  return *this;
}
JsonRow& JsonRow::boolean(const std::string& key, bool value) {
  fields_[key] = value;
  return *this;
}
JsonRow& JsonRow::null(const std::string& key) {
  fields_[key] = nullptr;
  return *this;
}
std::string JsonRow::dump() const {
  return fields_.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

JsonRow base_row(const BenchOptions& o, const RunInfo& info) {
  JsonRow row;
  row.str("impl", "lightring")
      .integer("P", info.world_size)
      .integer("B", o.batch)
      .integer("H", o.heads)
      .integer("D", o.dim)
      .integer("E", o.vdim)
      .str("dtype", kernels::dtype_name(o.dtype))
      .boolean("decay", o.decay)
      .str("backend", kernels::device_name(o.backend));
  return row;
}

double fwd_bytes_per_token_head(const BenchOptions& o) {
  return (2.0 * o.dim + 2.0 * o.vdim) * esize(o);
}
double bwd_bytes_per_token_head(const BenchOptions& o) {
  return (4.0 * o.dim + 3.0 * o.vdim) * esize(o);
}

void print_header(const BenchOptions& o, const RunInfo& info) {
  std::printf("# lightring-bench  world %d  backend %s  device %s  mode %s\n", info.world_size,
              kernels::device_name(o.backend), info.device.c_str(), mode_name(o.mode));
  std::string schedules;
  for (auto s : o.schedules)
    schedules += std::string(schedules.empty() ? "" : ",") + parallel::schedule_name(s);
  std::printf("# B %ld  H %ld  D %ld  E %ld  dtype %s  decay %s  states %s  schedule %s\n",
              static_cast<long>(o.batch), static_cast<long>(o.heads), static_cast<long>(o.dim),
              static_cast<long>(o.vdim), kernels::dtype_name(o.dtype), o.decay ? "on" : "off",
              o.states ? "on" : "off", schedules.c_str());
  if (o.docs.enabled())
    std::printf("# docs %s (--docs-seed %llu): packed documents, per-document states %s\n",
                o.docs.text.c_str(), static_cast<unsigned long long>(o.docs_seed),
                o.states ? "on" : "off");
  std::printf("# warmup %d  iters %d (median)  check %s  commit %s\n", o.warmup, o.iters,
              o.check ? "on" : "off", info.commit.c_str());
  std::printf("# versions: %s\n", info.versions.c_str());
  if (o.backend == kernels::Device::kCuda)
    std::printf("# kernel families: %s\n", kernels::kernel_families().c_str());
  if (!info.transport.empty()) std::printf("# exchange transport: %s\n", info.transport.c_str());
  if (info.timeout_s > 0)
    std::printf("# deadline: %g s per wait for a peer (--timeout, LIGHTRING_COMM_TIMEOUT_S)\n",
                info.timeout_s);
  if (info.nodes.num_ranks() > 0) {
    // One line of at most 120 columns whatever the cluster: the node list is cut.
    const std::string by =
        info.nodes.source == "hostname" ? ", by host name" : ", by " + info.nodes.source;
    std::string nodes = info.nodes.describe();
    const size_t room = 120 - std::strlen("# nodes: ") - by.size();
    if (nodes.size() > room) nodes = nodes.substr(0, room - 4) + " ...";
    std::printf("# nodes: %s%s\n", nodes.c_str(), by.c_str());
  }
  std::printf(
      "# cost model of auto: alpha %.3g us, beta %.3g GB/s, gamma %.3g GB/s; between nodes "
      "alpha %.3g us, beta %.3g GB/s\n",
      o.link.latency_us, o.link.bandwidth_Bpus / 1e3, o.link.combine_Bpus / 1e3,
      o.link.inter_latency_us, o.link.inter_bandwidth_Bpus / 1e3);
  const char* r_from = !o.measure_nodes             ? "--ranks-per-node"
                       : info.nodes.num_nodes() > 1 ? "measured"
                                                    : "measured: one node";
  std::printf("# cost model: ranks/node %d (%s)", o.link.ranks_per_node, r_from);
  if (o.link.span.nodes == 1)
    std::printf("; the group is on one node: one level");
  else if (o.link.span.nodes > 1)
    std::printf("; the group spans %d node%s, %d of %d ring hops between nodes", o.link.span.nodes,
                o.link.span.nodes == 1 ? "" : "s", o.link.span.crossings, info.world_size - 1);
  std::printf("\n");
  if (reports_auto(o)) {
    const parallel::ScheduleChoice c = auto_choice(o, info);
    std::printf("# auto: %s, %s\n#   model: ring %.1f us, allgather %.1f us, scan %.1f us\n",
                parallel::schedule_name(c.schedule), c.reason.c_str(), c.ring_us, c.allgather_us,
                c.scan_us);
  }
  if (info.copy_GBps > 0)
    std::printf("# copy ceiling (bytes read + written): %.1f GB/s\n", info.copy_GBps);
  if (!info.startup_bytes.empty()) {
    std::printf("# device memory in use at start-up (most over ranks):");
    for (const auto& [stage, bytes] : info.startup_bytes)
      std::printf(" %s %.3f GB", stage.c_str(), bytes / 1e9);
    std::printf("\n");
  }
  if (o.mode != BenchMode::kRun) {
    std::fflush(stdout);
    return;
  }
  std::printf(
      "# FLOPs per token per head: fwd ~ 2*blk*(D+E) + 6*D*E, bwd ~ 2-2.5x fwd (algorithm.md 4)\n");
  std::printf("# min bytes per token per head: fwd (2D+2E)*%d = %.0f, bwd (4D+3E)*%d = %.0f\n",
              static_cast<int>(esize(o)), fwd_bytes_per_token_head(o), static_cast<int>(esize(o)),
              bwd_bytes_per_token_head(o));
  if (o.wide) {
    std::printf(
        "# %9s %8s %8s %8s %8s %10s %10s %7s %5s %9s %4s %7s %7s %7s %7s %7s %5s %7s %7s %9s "
        "%8s %6s\n",
        "N", "n_local", "fwd_ms", "bwd_ms", "step_ms", "tok/s", "tok/s/rk", "GB/s", "%copy",
        "state_B", "msgs", "xf_ms", "xb_ms", "spanf", "spanb", "expo_ms", "ovl", "peak_GB",
        "allocGB", "schedule", "max_err", "#wrong");
  } else {
    std::printf("# %9s %8s %8s %8s %8s %9s %5s %7s %7s %4s %7s %9s %8s %6s\n", "N", "n_local",
                "fwd_ms", "bwd_ms", "step_ms", "tok/s", "%copy", "xchg_ms", "expo_ms", "ovl",
                "peak_GB", "schedule", "max_err", "#wrong");
  }
  std::fflush(stdout);
}

namespace {

// A time in ms in at most `width` characters: 3 decimals while they fit, fewer for long rows.
std::string ms_text(double ms, int width) {
  char buf[64];
  for (int decimals = 3; decimals >= 0; --decimals) {
    std::snprintf(buf, sizeof buf, "%.*f", decimals, ms);
    if (static_cast<int>(std::strlen(buf)) <= width) return buf;
  }
  std::snprintf(buf, sizeof buf, "%.2g", ms);
  return buf;
}

}  // namespace

void print_row(const BenchOptions& o, const RunInfo& info, const RowResult& r) {
  const double tok_s = r.step_ms > 0 ? o.batch * r.N / (r.step_ms * 1e-3) : 0.0;
  const double gbps =
      achieved_GBps(o, r, fwd_bytes_per_token_head(o) + bwd_bytes_per_token_head(o), r.step_ms);
  char err[32] = "-", wrong[32] = "-", expo[32] = "-", ovl[32] = "-", pct[32] = "-";
  if (r.checked) {
    std::snprintf(err, sizeof err, "%.2e", r.rel_err);
    std::snprintf(wrong, sizeof wrong, "%ld%s", static_cast<long>(r.num_wrong), r.pass ? "" : "!");
  }
  if (r.local_step_ms >= 0)
    std::snprintf(expo, sizeof expo, "%s", ms_text(r.exposed_ms(), 7).c_str());
  if (r.overlap() >= 0) std::snprintf(ovl, sizeof ovl, "%.2f", r.overlap());
  if (info.copy_GBps > 0) std::snprintf(pct, sizeof pct, "%.1f", 100.0 * gbps / info.copy_GBps);
  if (o.wide) {
    std::printf(
        "  %9ld %8ld %8.3f %8.3f %8.3f %10.4g %10.4g %7.1f %5s %9zu %4d %7.3f %7.3f %7.3f "
        "%7.3f %7s %5s %7.3f %7.3f %9s %8s %6s\n",
        static_cast<long>(r.N), static_cast<long>(r.n_local_max), r.fwd_ms, r.bwd_ms, r.step_ms,
        tok_s, tok_s / info.world_size, gbps, pct, r.state_bytes, r.messages_per_step,
        r.xchg_fwd_ms, r.xchg_bwd_ms, r.span_fwd_ms, r.span_bwd_ms, expo, ovl, r.peak_bytes / 1e9,
        r.alloc_peak_bytes / 1e9, r.schedule.c_str(), err, wrong);
  } else {
    std::printf("  %9ld %8ld %8s %8s %8s %9.3g %5s %7s %7s %4s %7.3f %9s %8s %6s\n",
                static_cast<long>(r.N), static_cast<long>(r.n_local_max),
                ms_text(r.fwd_ms, 8).c_str(), ms_text(r.bwd_ms, 8).c_str(),
                ms_text(r.step_ms, 8).c_str(), tok_s, pct,
                ms_text(r.xchg_fwd_ms + r.xchg_bwd_ms, 7).c_str(), expo, ovl, r.peak_bytes / 1e9,
                r.schedule.c_str(), err, wrong);
  }
  std::fflush(stdout);
}

std::vector<JsonRow> json_rows(const BenchOptions& o, const RunInfo& info, const RowResult& r) {
  struct Pass {
    const char* name;
    double ms, bytes_per_token_head, xchg_ms, span_ms;
  } passes[3] = {{"fwd", r.fwd_ms, fwd_bytes_per_token_head(o), r.xchg_fwd_ms, r.span_fwd_ms},
                 {"bwd", r.bwd_ms, bwd_bytes_per_token_head(o), r.xchg_bwd_ms, r.span_bwd_ms},
                 {"fwdbwd", r.step_ms, fwd_bytes_per_token_head(o) + bwd_bytes_per_token_head(o),
                  r.xchg_fwd_ms + r.xchg_bwd_ms, r.span_fwd_ms + r.span_bwd_ms}};
  std::vector<JsonRow> out;
  for (const Pass& p : passes) {
    const double tok_s = p.ms > 0 ? o.batch * r.N / (p.ms * 1e-3) : 0.0;
    const double tbps = achieved_GBps(o, r, p.bytes_per_token_head, p.ms) / 1e3;
    JsonRow row = base_row(o, info);
    row.str("schedule", r.schedule)
        .integer("N", r.N)
        .integer("n_local", r.n_local_max)
        .integer("n_local_min", r.n_local_min);
    if (o.docs.enabled()) {
      row.str("docs_spec", o.docs.text)
          .integer("num_docs", r.num_docs)
          .num("mean_doc_len", static_cast<double>(r.N) / static_cast<double>(r.num_docs));
    } else {
      row.null("docs_spec").null("num_docs").null("mean_doc_len");
    }
    row.str("pass", p.name)
        .num("ms", p.ms)
        .num("tokens_per_s", tok_s)
        .num("tokens_per_s_per_rank", tok_s / info.world_size)
        .num("achieved_TBps", tbps);
    if (info.copy_GBps > 0) {
      row.num("frac_of_copy", tbps * 1e3 / info.copy_GBps);
    } else {
      row.null("frac_of_copy");
    }
    row.num("peak_GB", r.peak_bytes / 1e9).num("alloc_peak_GB", r.alloc_peak_bytes / 1e9);
    if (r.checked) {
      row.num("rel_err", r.rel_err).integer("num_wrong", r.num_wrong);
    } else {
      row.null("rel_err").null("num_wrong");
    }
    row.num("exchange_ms", p.xchg_ms).num("exchange_span_ms", p.span_ms);
    if (std::string(p.name) == "fwdbwd" && r.local_step_ms >= 0) {
      row.num("local_ms", r.local_step_ms).num("exposed_ms", r.exposed_ms());
      if (r.overlap() >= 0) {
        row.num("overlap", r.overlap());
      } else {
        row.null("overlap");
      }
    }
    row.integer("state_bytes", static_cast<int64_t>(r.state_bytes))
        .integer("messages", r.messages_per_step);
    out.push_back(row);
  }
  return out;
}

void write_json(const std::string& path, const BenchOptions& o, const RunInfo& info,
                const std::vector<JsonRow>& rows, const nlohmann::ordered_json& extra) {
  nlohmann::ordered_json doc;
  doc["tool"] = "lightring-bench";
  doc["commit"] = info.commit;
  doc["device"] = info.device;
  doc["date"] = info.date;
  doc["world_size"] = info.world_size;
  doc["backend"] = kernels::device_name(o.backend);
  doc["mode"] = mode_name(o.mode);
  doc["versions"] = info.versions;
  if (!info.transport.empty()) doc["exchange_transport"] = info.transport;
  doc["ceilings"] = nlohmann::ordered_json::object();
  if (info.copy_GBps > 0) doc["ceilings"]["copy_TBps"] = info.copy_GBps / 1e3;
  if (!info.startup_bytes.empty()) {
    nlohmann::ordered_json mem = nlohmann::ordered_json::object();
    for (const auto& [name, bytes] : info.startup_bytes) mem[name] = bytes / 1e9;
    doc["startup_memory_GB"] = mem;
  }
  if (info.nodes.num_ranks() > 0) {
    const parallel::NodeLayout& n = info.nodes;
    nlohmann::ordered_json topo;
    topo["num_nodes"] = n.num_nodes();
    topo["ranks_per_node"] = n.ranks_per_node();  // 0: the nodes hold different numbers
    topo["blocked"] = n.blocked();
    topo["source"] = n.source;
    topo["nodes"] = nlohmann::ordered_json::array();
    for (int node = 0; node < n.num_nodes(); ++node) {
      nlohmann::ordered_json ranks = nlohmann::ordered_json::array();
      for (int r = 0; r < n.num_ranks(); ++r)
        if (n.node_of_rank[r] == node) ranks.push_back(r);
      topo["nodes"].push_back({{"name", n.node_names[node]}, {"ranks", ranks}});
    }
    doc["topology"] = topo;
  }
  doc["link"] = link_json(o);
  if (reports_auto(o)) {
    const parallel::ScheduleChoice c = auto_choice(o, info);
    doc["auto"] = {{"schedule", parallel::schedule_name(c.schedule)},
                   {"state_bytes", o.batch * o.heads * o.dim * o.vdim * 4},
                   {"ring_us", c.ring_us},
                   {"allgather_us", c.allgather_us},
                   {"scan_us", c.scan_us},
                   {"nodes", c.span.nodes},
                   {"crossings", c.span.crossings},
                   {"reason", c.reason}};
  }
  LR_CHECK(extra.is_object(), "write_json: extra fields must be a JSON object");
  for (const auto& [key, value] : extra.items()) doc[key] = value;
  doc["rows"] = nlohmann::ordered_json::array();
  for (const JsonRow& r : rows) doc["rows"].push_back(r.json());
  std::ofstream f(path);
  LR_CHECK(f.good(), "--json: cannot write '", path, "'");
  // Invalid UTF-8 in a string (a device or path name) is replaced, never a throw mid-write.
  f << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  LR_CHECK(f.good(), "--json: writing '", path, "' failed");
}

}  // namespace lightring::launch
