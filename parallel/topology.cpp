// Node layout of a job from its ranks' host names (see parallel/topology.h).
#include "parallel/topology.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace lightring::parallel {

namespace {

// "0-3" for a run of consecutive ranks, else "0,2,5".
std::string rank_list(const std::vector<int>& ranks) {
  std::ostringstream os;
  const bool run = ranks.back() - ranks.front() + 1 == static_cast<int>(ranks.size());
  if (run && ranks.size() > 1) {
    os << ranks.front() << "-" << ranks.back();
    return os.str();
  }
  for (size_t i = 0; i < ranks.size(); ++i) os << (i ? "," : "") << ranks[i];
  return os.str();
}

// A name tagged with where it came from: 'E' (LIGHTRING_NODE_NAME) or 'H' (gethostname).
constexpr char kFromEnvironment = 'E', kFromHostname = 'H';

}  // namespace

int NodeLayout::ranks_on_node(int node) const {
  LR_CHECK(node >= 0 && node < num_nodes(), "NodeLayout: no node ", node, " among ", num_nodes());
  return static_cast<int>(std::count(node_of_rank.begin(), node_of_rank.end(), node));
}

int NodeLayout::ranks_per_node() const {
  if (node_names.empty()) return 0;
  const int first = ranks_on_node(0);
  for (int n = 1; n < num_nodes(); ++n)
    if (ranks_on_node(n) != first) return 0;
  return first;
}

bool NodeLayout::blocked() const {
  // Node ids count up in order of first rank, so blocks are exactly: the id never goes back.
  for (int r = 1; r < num_ranks(); ++r)
    if (node_of_rank[r] != node_of_rank[r - 1] && node_of_rank[r] != node_of_rank[r - 1] + 1)
      return false;
  return true;
}

std::string NodeLayout::describe() const {
  std::ostringstream os;
  const int R = ranks_per_node();
  os << num_nodes() << (num_nodes() == 1 ? " node" : " nodes");
  if (R > 0) {
    os << " x " << R << (R == 1 ? " rank" : " ranks");
  } else {
    int lo = INT_MAX, hi = 0;
    for (int n = 0; n < num_nodes(); ++n) {
      lo = std::min(lo, ranks_on_node(n));
      hi = std::max(hi, ranks_on_node(n));
    }
    os << ", " << lo << "-" << hi << " ranks each";
  }
  os << " (";
  for (int n = 0; n < num_nodes(); ++n) {
    std::vector<int> ranks;
    for (int r = 0; r < num_ranks(); ++r)
      if (node_of_rank[r] == n) ranks.push_back(r);
    os << (n ? "; " : "") << node_names[n] << ": rank" << (ranks.size() > 1 ? "s " : " ")
       << rank_list(ranks);
  }
  os << ")";
  return os.str();
}

NodeLayout layout_from_names(const std::vector<std::string>& names) {
  LR_CHECK(!names.empty(), "layout_from_names: no ranks");
  NodeLayout layout;
  for (size_t r = 0; r < names.size(); ++r) {
    LR_CHECK(!names[r].empty(), "layout_from_names: rank ", r, " has an empty node name");
    const auto it = std::find(layout.node_names.begin(), layout.node_names.end(), names[r]);
    layout.node_of_rank.push_back(static_cast<int>(it - layout.node_names.begin()));
    if (it == layout.node_names.end()) layout.node_names.push_back(names[r]);
  }
  return layout;
}

std::string local_node_name() {
  if (const char* env = std::getenv("LIGHTRING_NODE_NAME"); env && *env) return env;
  char host[HOST_NAME_MAX + 1] = {};
  LR_CHECK(gethostname(host, sizeof host - 1) == 0 && host[0] != '\0',
           "gethostname() failed: set LIGHTRING_NODE_NAME to this node's name");
  return host;
}

NodeLayout discover_nodes(comm::Communicator& comm) {
  const char* env = std::getenv("LIGHTRING_NODE_NAME");
  const char tag = env && *env ? kFromEnvironment : kFromHostname;
  const std::vector<std::string> tagged =
      comm::all_gather_strings(comm, std::string(1, tag) + local_node_name());
  std::vector<std::string> names;
  bool from_environment = false;
  for (const std::string& t : tagged) {
    LR_CHECK(t.size() >= 2, "discover_nodes: a rank sent no node name");
    from_environment = from_environment || t[0] == kFromEnvironment;
    names.push_back(t.substr(1));
  }
  NodeLayout layout = layout_from_names(names);
  layout.source = from_environment ? "LIGHTRING_NODE_NAME" : "hostname";
  return layout;
}

GroupSpan group_span(const NodeLayout& layout, int first, int count) {
  LR_CHECK(count >= 1 && first >= 0 && first + count <= layout.num_ranks(), "group_span: ranks [",
           first, ", ", first + count, ") are not inside a layout of ", layout.num_ranks(),
           " ranks");
  std::vector<int> nodes;
  GroupSpan span;
  for (int r = first; r < first + count; ++r) {
    const int node = layout.node_of_rank[r];
    if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) nodes.push_back(node);
    if (r > first && node != layout.node_of_rank[r - 1]) ++span.crossings;
  }
  span.nodes = static_cast<int>(nodes.size());
  return span;
}

std::string sp_placement_error(const NodeLayout& layout, int sp_size) {
  LR_CHECK(sp_size >= 1 && layout.num_ranks() % sp_size == 0, "sp_placement_error: --sp ", sp_size,
           " does not divide the ", layout.num_ranks(), " ranks");
  for (int first = 0; first < layout.num_ranks(); first += sp_size) {
    if (group_span(layout, first, sp_size).nodes == 1) continue;
    std::ostringstream os;
    std::vector<std::string> names;
    for (int r = first; r < first + sp_size; ++r) {
      const std::string& name = layout.node_names[layout.node_of_rank[r]];
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    os << "--sp " << sp_size << " puts SP group " << first / sp_size << " (ranks " << first << "-"
       << first + sp_size - 1 << ") on " << names.size() << " nodes (";
    for (size_t i = 0; i < names.size(); ++i) os << (i ? ", " : "") << names[i];
    os << "); the job has " << layout.describe() << ": ";
    const int R = layout.ranks_per_node();
    if (R > 0 && layout.blocked()) {
      os << "pick an --sp that divides " << R << " (the ranks per node)";
    } else {
      os << "start the ranks node by node (mpirun --map-by slot) with --sp dividing the ranks of "
            "every node";
    }
    os << ", or pass --sp-across-nodes to let SP groups span nodes";
    return os.str();
  }
  return "";
}

}  // namespace lightring::parallel
