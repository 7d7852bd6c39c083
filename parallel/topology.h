// Where the ranks of a job run: the node of every rank, and what that means for a block of
// consecutive ranks (the SP groups of comm/layout.h) and for the cost model of `auto`.
//
// A node is a host name: every rank reports gethostname(), or LIGHTRING_NODE_NAME when it is set
// (a test's way to make one host look like several nodes; docs/environment.md). Ranks with the
// same name share a node. Nodes are numbered in order of their first rank: node 0 holds rank 0,
// node 1 holds the first rank not on node 0, and so on. Every rank of a communicator gets the
// same NodeLayout (discover_nodes gathers every name on every rank).
#pragma once

#include <string>
#include <vector>

#include "comm/communicator.h"
#include "parallel/sequence_parallel.h"

namespace lightring::parallel {

struct NodeLayout {
  std::vector<int> node_of_rank;        // [ranks]: node id of each rank of the communicator
  std::vector<std::string> node_names;  // [nodes]: the host name of each node id
  std::string source = "hostname";      // "hostname" or "LIGHTRING_NODE_NAME"

  int num_ranks() const { return static_cast<int>(node_of_rank.size()); }
  int num_nodes() const { return static_cast<int>(node_names.size()); }
  int ranks_on_node(int node) const;
  // The ranks of every node when all nodes hold the same number; 0 when they differ.
  int ranks_per_node() const;
  // Whether every node's ranks form one run of consecutive ranks (mpirun --map-by slot or
  // ppr:R:node numbers ranks node by node; --map-by node deals them round robin).
  bool blocked() const;
  // "2 nodes x 2 ranks (lr-node0: ranks 0-1; lr-node1: ranks 2-3)"; uneven nodes say
  // "3 nodes, 1-2 ranks each (...)"; a node with scattered ranks lists them "0,2".
  std::string describe() const;
};

// The layout of ranks whose host names are names[rank]. Throws on an empty list or name.
NodeLayout layout_from_names(const std::vector<std::string>& names);

// This process's node name: LIGHTRING_NODE_NAME when set and not empty, else gethostname().
std::string local_node_name();

// Every rank's node name over comm (collective, bounded by its deadline like any gather).
NodeLayout discover_nodes(comm::Communicator& comm);

// The placement of the ranks [first, first + count) of layout: how many nodes they run on and
// how many of their count-1 neighbouring pairs (r, r+1) sit on two nodes (the ring's hops
// between nodes). Throws when the block is not inside the layout.
GroupSpan group_span(const NodeLayout& layout, int first, int count);

// The SP groups of comm/layout.h are the blocks [g·S, g·S + S). Returns "" when every block lies
// on one node, else why not, naming --sp and the node layout, e.g. "--sp 4 puts SP group 0
// (ranks 0-3) on 2 nodes (lr-node0, lr-node1); the job has 2 nodes x 2 ranks (...): pick an
// --sp that divides 2 (the ranks per node), or pass --sp-across-nodes".
std::string sp_placement_error(const NodeLayout& layout, int sp_size);

}  // namespace lightring::parallel
