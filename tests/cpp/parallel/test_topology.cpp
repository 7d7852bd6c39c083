// The node layout of parallel/topology.h and the two-level cost model of `auto`
// (parallel/sequence_parallel.h) on given host names: no MPI, no communicator.
//
// The reference of the cost model is its formula, written again here: hop = α + m/β on a node,
// hop_e = α_e + m/β_e between nodes, fold = m/γ, a group of P ranks on n nodes with c of its
// P-1 pairs (r, r+1) on two nodes:
//   ring       (P-1-c)·(hop + fold) + c·(hop_e + fold)
//   allgather  α_e·ceil(log2 P) + (P-1)·m/β_e + (P-1)·fold       (α, β when n = 1)
//   scan       ceil(log2 P)·(hop_e + 2·fold)                     (hop when n = 1)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "parallel/sequence_parallel.h"
#include "parallel/topology.h"

namespace lightring {
namespace {

using parallel::GroupSpan;
using parallel::LinkModel;
using parallel::NodeLayout;
using parallel::Schedule;

// names[r] = "node<r / per_node>": ranks numbered node by node (mpirun --map-by ppr:R:node).
std::vector<std::string> blocked_names(int nodes, int per_node) {
  std::vector<std::string> names;
  for (int n = 0; n < nodes; ++n)
    for (int i = 0; i < per_node; ++i) names.push_back("node" + std::to_string(n));
  return names;
}

struct Reference {
  double ring, allgather, scan;
};

Reference reference_costs(int P, double m, const LinkModel& l, int nodes, int crossings) {
  const bool two = nodes > 1;
  const double hop = l.latency_us + m / l.bandwidth_Bpus, fold = m / l.combine_Bpus;
  const double hop_e = two ? l.inter_latency_us + m / l.inter_bandwidth_Bpus : hop;
  const double alpha_e = two ? l.inter_latency_us : l.latency_us;
  const double beta_e = two ? l.inter_bandwidth_Bpus : l.bandwidth_Bpus;
  const double rounds = std::ceil(std::log2(static_cast<double>(P)));
  return {(P - 1 - crossings) * (hop + fold) + crossings * (hop_e + fold),
          alpha_e * rounds + (P - 1) * m / beta_e + (P - 1) * fold, rounds * (hop_e + 2 * fold)};
}

Schedule cheapest(const Reference& c) {
  Schedule best = Schedule::kRing;
  double cost = c.ring;
  if (c.scan < cost) best = Schedule::kScan, cost = c.scan;
  if (c.allgather < cost) best = Schedule::kAllGather;
  return best;
}

TEST(NodeLayout, BlockedTwoByTwo) {
  const NodeLayout l =
      parallel::layout_from_names({"lr-node0", "lr-node0", "lr-node1", "lr-node1"});
  EXPECT_EQ(l.num_ranks(), 4);
  EXPECT_EQ(l.num_nodes(), 2);
  EXPECT_EQ(l.ranks_per_node(), 2);
  EXPECT_TRUE(l.blocked());
  EXPECT_EQ(l.node_of_rank, (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(l.describe(), "2 nodes x 2 ranks (lr-node0: ranks 0-1; lr-node1: ranks 2-3)");
}

TEST(NodeLayout, RoundRobinAndUneven) {
  // mpirun --map-by node: ranks dealt over the nodes in turn.
  const NodeLayout rr = parallel::layout_from_names({"a", "b", "a", "b", "a", "b"});
  EXPECT_EQ(rr.ranks_per_node(), 3);
  EXPECT_FALSE(rr.blocked());
  EXPECT_EQ(rr.describe(), "2 nodes x 3 ranks (a: ranks 0,2,4; b: ranks 1,3,5)");
  // Node ids follow the first rank of each node, whatever the names sort to.
  const NodeLayout uneven = parallel::layout_from_names({"z", "z", "z", "a", "m"});
  EXPECT_EQ(uneven.node_of_rank, (std::vector<int>{0, 0, 0, 1, 2}));
  EXPECT_EQ(uneven.ranks_per_node(), 0);
  EXPECT_TRUE(uneven.blocked());
  EXPECT_EQ(uneven.describe(), "3 nodes, 1-3 ranks each (z: ranks 0-2; a: rank 3; m: rank 4)");
  const NodeLayout one = parallel::layout_from_names({"host"});
  EXPECT_EQ(one.describe(), "1 node x 1 rank (host: rank 0)");
  EXPECT_THROW(parallel::layout_from_names({}), Error);
  EXPECT_THROW(parallel::layout_from_names({"a", ""}), Error);
}

TEST(NodeLayout, LocalNodeNameOverride) {
  const char* saved = std::getenv("LIGHTRING_NODE_NAME");
  const std::string keep = saved ? saved : "";
  setenv("LIGHTRING_NODE_NAME", "fake-node-7", 1);
  EXPECT_EQ(parallel::local_node_name(), "fake-node-7");
  unsetenv("LIGHTRING_NODE_NAME");
  EXPECT_FALSE(parallel::local_node_name().empty());  // gethostname()
  if (saved) setenv("LIGHTRING_NODE_NAME", keep.c_str(), 1);
}

TEST(NodeLayout, GroupSpan) {
  const NodeLayout l = parallel::layout_from_names(blocked_names(3, 4));  // 12 ranks
  auto span = [&](int first, int count) {
    const GroupSpan s = parallel::group_span(l, first, count);
    return std::vector<int>{s.nodes, s.crossings};
  };
  EXPECT_EQ(span(0, 4), (std::vector<int>{1, 0}));
  EXPECT_EQ(span(4, 4), (std::vector<int>{1, 0}));
  EXPECT_EQ(span(2, 4), (std::vector<int>{2, 1}));  // ranks 2-5 straddle nodes 0 and 1
  EXPECT_EQ(span(0, 12), (std::vector<int>{3, 2}));
  EXPECT_EQ(span(3, 6), (std::vector<int>{3, 2}));  // 3 | 4-7 | 8
  const NodeLayout rr = parallel::layout_from_names({"a", "b", "a", "b"});
  EXPECT_EQ(parallel::group_span(rr, 0, 4).crossings, 3);  // every hop between nodes
  EXPECT_THROW(parallel::group_span(l, 10, 4), Error);
  EXPECT_THROW(parallel::group_span(l, 0, 0), Error);
}

// A measured aligned layout prices exactly like --ranks-per-node R.
TEST(NodeLayout, AlignedSpanEqualsRanksPerNode) {
  for (int R : {1, 2, 3, 8}) {
    for (int nodes : {1, 2, 5}) {
      const NodeLayout l = parallel::layout_from_names(blocked_names(nodes, R));
      LinkModel by_r;
      by_r.ranks_per_node = R;
      for (int P = 1; P <= l.num_ranks(); ++P) {
        const GroupSpan measured = parallel::group_span(l, 0, P);
        const GroupSpan modelled = parallel::effective_span(P, by_r);
        EXPECT_EQ(measured.nodes, modelled.nodes) << "R " << R << " P " << P;
        EXPECT_EQ(measured.crossings, modelled.crossings) << "R " << R << " P " << P;
      }
    }
  }
}

TEST(SpPlacement, InsideNodesOrNamedError) {
  const NodeLayout l =
      parallel::layout_from_names({"lr-node0", "lr-node0", "lr-node1", "lr-node1"});
  EXPECT_EQ(parallel::sp_placement_error(l, 1), "");
  EXPECT_EQ(parallel::sp_placement_error(l, 2), "");
  EXPECT_EQ(parallel::sp_placement_error(l, 4),
            "--sp 4 puts SP group 0 (ranks 0-3) on 2 nodes (lr-node0, lr-node1); the job has 2 "
            "nodes x 2 ranks (lr-node0: ranks 0-1; lr-node1: ranks 2-3): pick an --sp that "
            "divides 2 (the ranks per node), or pass --sp-across-nodes to let SP groups span "
            "nodes");
  // 2 nodes x 3 ranks, --sp 2: group 1 (ranks 2-3) straddles the boundary, group 0 does not.
  const NodeLayout six = parallel::layout_from_names(blocked_names(2, 3));
  const std::string e = parallel::sp_placement_error(six, 2);
  EXPECT_NE(e.find("--sp 2 puts SP group 1 (ranks 2-3) on 2 nodes (node0, node1)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("divides 3"), std::string::npos) << e;
  EXPECT_EQ(parallel::sp_placement_error(six, 3), "");
  // Round robin: even --sp 2 straddles; the advice is the rank order.
  const NodeLayout rr = parallel::layout_from_names({"a", "b", "a", "b"});
  const std::string r = parallel::sp_placement_error(rr, 2);
  EXPECT_NE(r.find("--map-by slot"), std::string::npos) << r;
  EXPECT_EQ(parallel::sp_placement_error(rr, 1), "");
}

// Inside a node, P = 4 with 2 MiB states on NVLink-like links: scan is cheapest. The same 4 ranks
// on 2 nodes behind a slow network (α_e 10 µs, β_e 5 GB/s): ring, which crosses once, while
// scan crosses in both rounds. Dealt round robin (every hop crosses): scan again.
TEST(CostModel, CrossingGroupChangesTheChoice) {
  LinkModel link;  // α 5 µs, β 50 GB/s, γ 200 GB/s
  link.inter_latency_us = 10;
  link.inter_bandwidth_Bpus = 5e3;
  const int P = 4;
  const size_t m = size_t{2} << 20;
  struct Case {
    GroupSpan span;
    Schedule expected;
  } cases[] = {{{1, 0}, Schedule::kScan}, {{2, 1}, Schedule::kRing}, {{2, 3}, Schedule::kScan}};
  for (const Case& c : cases) {
    link.span = c.span;
    const Reference ref = reference_costs(P, m, link, c.span.nodes, c.span.crossings);
    const std::string tag =
        std::to_string(c.span.nodes) + " nodes, " + std::to_string(c.span.crossings) + " crossings";
    EXPECT_NEAR(parallel::schedule_cost_us(Schedule::kRing, P, m, link), ref.ring, 1e-6) << tag;
    EXPECT_NEAR(parallel::schedule_cost_us(Schedule::kAllGather, P, m, link), ref.allgather, 1e-6)
        << tag;
    EXPECT_NEAR(parallel::schedule_cost_us(Schedule::kScan, P, m, link), ref.scan, 1e-6) << tag;
    EXPECT_EQ(cheapest(ref), c.expected) << tag;
    EXPECT_EQ(parallel::choose_schedule(Schedule::kAuto, P, m, link), c.expected) << tag;
  }
  // The span from a layout of host names gives the same decision as the explicit one.
  link.span = parallel::group_span(parallel::layout_from_names(blocked_names(2, 2)), 0, 4);
  const parallel::ScheduleChoice choice = parallel::explain_schedule(Schedule::kAuto, P, m, link);
  EXPECT_EQ(choice.schedule, Schedule::kRing);
  EXPECT_EQ(choice.span.nodes, 2);
  const Reference ref = reference_costs(P, m, link, 2, 1);
  EXPECT_NEAR(choice.ring_us, ref.ring, 1e-6);
  EXPECT_NEAR(choice.scan_us, ref.scan, 1e-6);
  EXPECT_EQ(choice.reason,
            "the cheapest for 2097152 B; 4 ranks on 2 nodes, 1 of 3 ring hops between nodes");
  // With the inter-node link as fast as the node's, the placement does not matter.
  link.inter_latency_us = link.latency_us;
  link.inter_bandwidth_Bpus = link.bandwidth_Bpus;
  EXPECT_EQ(parallel::choose_schedule(Schedule::kAuto, P, m, link), Schedule::kScan);
}

TEST(CostModel, ExplainNamesTheRule) {
  LinkModel link;
  const parallel::ScheduleChoice two = parallel::explain_schedule(Schedule::kAuto, 2, 4096, link);
  EXPECT_EQ(two.schedule, Schedule::kRing);
  EXPECT_NE(two.reason.find("at most 2 ranks"), std::string::npos) << two.reason;
  EXPECT_NE(two.reason.find("2 ranks, one level"), std::string::npos) << two.reason;
  link.span = {1, 0};
  EXPECT_NE(parallel::explain_schedule(Schedule::kAuto, 4, 4096, link).reason.find("on one node"),
            std::string::npos);
  link.span = {};
  link.ranks_per_node = 8;
  EXPECT_NE(parallel::explain_schedule(Schedule::kAuto, 4, 4096, link)
                .reason.find("4 ranks within one node of 8"),
            std::string::npos);
  const parallel::ScheduleChoice asked =
      parallel::explain_schedule(Schedule::kAllGather, 8, 4096, link);
  EXPECT_EQ(asked.schedule, Schedule::kAllGather);
  EXPECT_EQ(asked.reason.rfind("requested", 0), 0u) << asked.reason;
}

TEST(CostModel, ImpossibleSpanThrows) {
  LinkModel link;
  link.span = {3, 1};  // 3 nodes need at least 2 crossings
  EXPECT_THROW(parallel::schedule_cost_us(Schedule::kRing, 4, 4096, link), Error);
  link.span = {2, 4};  // 4 ranks have 3 pairs
  EXPECT_THROW(parallel::schedule_cost_us(Schedule::kRing, 4, 4096, link), Error);
  link.span = {5, 4};  // more nodes than ranks
  EXPECT_THROW(parallel::schedule_cost_us(Schedule::kRing, 4, 4096, link), Error);
  link.span = {0, 1};
  EXPECT_THROW(parallel::schedule_cost_us(Schedule::kRing, 4, 4096, link), Error);
  link.span = {1, 0};
  EXPECT_NO_THROW(parallel::schedule_cost_us(Schedule::kRing, 4, 4096, link));
}

}  // namespace
}  // namespace lightring
