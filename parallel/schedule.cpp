// Schedule names and the cost model of `auto` (see parallel/sequence_parallel.h
// and docs/schedules.md for the derivation).
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "parallel/sequence_parallel.h"

namespace lightring::parallel {

Schedule parse_schedule(const std::string& name) {
  if (name == "ring") return Schedule::kRing;
  if (name == "allgather" || name == "all-gather" || name == "all_gather")
    return Schedule::kAllGather;
  if (name == "scan") return Schedule::kScan;
  if (name == "auto") return Schedule::kAuto;
  LR_THROW("schedule must be one of ring, allgather, scan, auto (got '", name, "')");
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::kRing:
      return "ring";
    case Schedule::kAllGather:
      return "allgather";
    case Schedule::kScan:
      return "scan";
    case Schedule::kAuto:
      return "auto";
  }
  return "?";
}

namespace {
int ceil_log2(int p) {
  int r = 0;
  while ((1 << r) < p) ++r;
  return r;
}
}  // namespace

GroupSpan effective_span(int num_ranks, const LinkModel& link) {
  LR_CHECK(num_ranks >= 1, "the cost model needs num_ranks >= 1 (got ", num_ranks, ")");
  const GroupSpan& s = link.span;
  if (s.nodes > 0) {
    // A measured placement: 1 node has no crossing; n nodes need at least n-1 (each node's
    // first rank after rank 0 follows a rank of another node) and at most P-1 pairs.
    LR_CHECK(s.nodes <= num_ranks && s.crossings >= s.nodes - 1 && s.crossings <= num_ranks - 1 &&
                 (s.nodes > 1 || s.crossings == 0),
             "the cost model's group span (", s.nodes, " nodes, ", s.crossings,
             " ring hops between nodes) is impossible for ", num_ranks, " ranks");
    return s;
  }
  LR_CHECK(s.nodes == 0 && s.crossings == 0,
           "the cost model's group span needs nodes >= 0 (0: unknown) and no crossings without "
           "nodes (got ",
           s.nodes, " nodes, ", s.crossings, " crossings)");
  const int R = link.ranks_per_node;
  if (R <= 0 || num_ranks <= R) return GroupSpan{1, 0};
  const int nodes = (num_ranks + R - 1) / R;
  return GroupSpan{nodes, nodes - 1};
}

double schedule_cost_us(Schedule s, int num_ranks, size_t bytes, const LinkModel& link) {
  LR_CHECK(num_ranks >= 1, "schedule_cost_us: num_ranks must be >= 1 (got ", num_ranks, ")");
  LR_CHECK(link.latency_us >= 0 && link.bandwidth_Bpus > 0 && link.combine_Bpus > 0,
           "schedule_cost_us: the link model needs latency >= 0 and bandwidths > 0");
  LR_CHECK(link.ranks_per_node >= 0 && link.inter_latency_us >= 0 && link.inter_bandwidth_Bpus > 0,
           "schedule_cost_us: the inter-node link needs ranks_per_node >= 0, latency >= 0 and "
           "bandwidth > 0");
  const GroupSpan span = effective_span(num_ranks, link);
  const double P = num_ranks, m = static_cast<double>(bytes);
  const bool two_level = span.nodes > 1;
  const double crossings = span.crossings;
  const double hop = link.latency_us + m / link.bandwidth_Bpus;  // one message on a node
  const double hop_e = two_level ? link.inter_latency_us + m / link.inter_bandwidth_Bpus : hop;
  const double alpha_e = two_level ? link.inter_latency_us : link.latency_us;
  const double beta_e = two_level ? link.inter_bandwidth_Bpus : link.bandwidth_Bpus;
  const double fold = m / link.combine_Bpus;  // one axpy combine
  const int rounds = ceil_log2(num_ranks);
  switch (s) {
    case Schedule::kRing:
      return (P - 1 - crossings) * (hop + fold) + crossings * (hop_e + fold);
    case Schedule::kAllGather:
      return alpha_e * rounds + (P - 1) * m / beta_e + (P - 1) * fold;
    case Schedule::kScan:
      return rounds * (hop_e + 2 * fold);
    case Schedule::kAuto:
      break;
  }
  LR_THROW("schedule_cost_us: resolve 'auto' with choose_schedule() first");
}

Schedule choose_schedule(Schedule requested, int num_ranks, size_t bytes, const LinkModel& link) {
  if (requested != Schedule::kAuto) return requested;
  if (num_ranks <= 2) return Schedule::kRing;  // one hop: every schedule is the same message
  Schedule best = Schedule::kRing;
  double best_cost = schedule_cost_us(Schedule::kRing, num_ranks, bytes, link);
  for (Schedule s : {Schedule::kScan, Schedule::kAllGather}) {
    const double c = schedule_cost_us(s, num_ranks, bytes, link);
    if (c < best_cost) {
      best = s;
      best_cost = c;
    }
  }
  return best;
}

ScheduleChoice explain_schedule(Schedule requested, int num_ranks, size_t bytes,
                                const LinkModel& link) {
  ScheduleChoice c;
  c.schedule = choose_schedule(requested, num_ranks, bytes, link);
  c.ring_us = schedule_cost_us(Schedule::kRing, num_ranks, bytes, link);
  c.allgather_us = schedule_cost_us(Schedule::kAllGather, num_ranks, bytes, link);
  c.scan_us = schedule_cost_us(Schedule::kScan, num_ranks, bytes, link);
  c.span = effective_span(num_ranks, link);
  std::ostringstream why;
  if (requested != Schedule::kAuto) {
    why << "requested";
  } else if (num_ranks <= 2) {
    why << "at most 2 ranks: one hop, every schedule sends the same message";
  } else {
    why << "the cheapest for " << bytes << " B";
  }
  why << "; " << num_ranks << (num_ranks == 1 ? " rank" : " ranks");
  if (c.span.nodes > 1) {
    why << " on " << c.span.nodes << " nodes, " << c.span.crossings << " of " << num_ranks - 1
        << " ring hops between nodes";
  } else if (link.span.nodes == 1) {
    why << " on one node";  // measured
  } else if (link.ranks_per_node > 0) {
    why << " within one node of " << link.ranks_per_node;
  } else {
    why << ", one level (ranks_per_node 0, no measured span)";
  }
  c.reason = why.str();
  return c;
}

}  // namespace lightring::parallel
