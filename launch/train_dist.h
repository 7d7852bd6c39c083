// What lightring-train needs across ranks beyond the attention's state exchange: sums over the
// world (gradients, losses, token counts), an agreement on errors, the check that every rank
// holds the same parameters, and the placement of the SP groups on the nodes. Host buffers over
// MPI (the CPU path).
//
// Every wait is bounded by the communicator's deadline (--timeout) and polls for peers that
// reported a failure (comm::check_peer_failures), like every comm/ operation: a dead or failing
// rank makes the others throw lightring::CommError instead of hanging.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "comm/layout.h"
#include "comm/mpi_communicator.h"
#include "parallel/topology.h"

namespace lightring::launch {

// In place: data[i] = Σ over the ranks of comm of data[i]. Collective; `what` names it in errors.
void all_reduce_sum(comm::MpiCommunicator& comm, float* data, size_t count, const char* what);
void all_reduce_sum(comm::MpiCommunicator& comm, double* data, size_t count, const char* what);

// Every rank passes its own error text ("" when it has none). When any rank has one, every rank
// throws lightring::Error with `context` and the first rank's error (a rank names its own error
// first), so that all ranks stop together with the same reason. Collective.
void agree_on_errors(comm::MpiCommunicator& comm, const std::string& my_error,
                     const std::string& context);

// A 128-bit digest of the exact bytes of the tensors, in order (contiguous copies are hashed).
std::vector<int64_t> tensors_digest(const std::vector<torch::Tensor>& tensors);

// Throws on every rank unless every rank's digest of `tensors` equals rank 0's; the message
// names `what`, `when` and the ranks that differ. Collective.
void check_identical(comm::MpiCommunicator& comm, const std::vector<torch::Tensor>& tensors,
                     const char* what, const char* when);

// The node of every world rank, checked against the SP groups of comm/layout.h (blocks of
// sp_size consecutive ranks): unless allow_across_nodes (--sp-across-nodes), every group must
// lie on one node, else every rank throws the same lightring::Error naming --sp and the node
// layout (the layout is gathered on every rank, so no rank waits for another's verdict).
// Collective over world.
parallel::NodeLayout check_sp_placement(comm::MpiCommunicator& world, int sp_size,
                                        bool allow_across_nodes);

// `link` with the measured span of the calling rank's SP group (its nodes and ring hops between
// nodes), so that auto prices a group across nodes with the inter-node link. Every rank of a
// group gets the same span, hence the same schedule.
parallel::LinkModel sp_group_link(const parallel::NodeLayout& nodes,
                                  const comm::GroupLayout& groups, parallel::LinkModel link);

}  // namespace lightring::launch
