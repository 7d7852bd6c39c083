// Lightning attention as one libtorch autograd Function over lightring's sequence-parallel
// runtime: forward runs parallel::forward (docs/algorithm.md §3) on the ranks of an SP group,
// backward runs parallel::backward; on one rank (no group, or a group of size 1) they are
// kernels::forward / kernels::backward of the local sequence.
//
// Tensors (this rank's shard of the sequence, the model-code layout):
//   q, k   [B, N, H, D]    any strides with a contiguous last dim (e.g. views into a qkvu
//                          projection); fp32, bf16 or fp16
//   v      [B, N, H, E]
//   decay  [H] fp32, s_h >= 0 (a constant: it gets no gradient)
//   out    o [B, N, H, E], o_t = c·q_t S_t with S_t = λ S_{t-1} + k_tᵀ v_t, S_{-1} = 0 on
//          SP rank 0 and the state left by the earlier shards elsewhere
// What backward keeps besides q, k, v: S_in of this shard, one [B, H, D, E] fp32 state (the
// given initial state on one rank, nothing when there is none).
//
// Ownership: the AttentionGroup (and the communicator it points to) must outlive the graph
// of every call made with it, backward included; the Function keeps a pointer, not a copy.
// Every rank of the group makes the same calls in the same order (forward, then backward).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "comm/communicator.h"
#include "kernels/documents.h"
#include "parallel/sequence_parallel.h"

namespace lightring::model {

struct AttentionGroup {
  comm::Communicator* sp = nullptr;  // the SP group; nullptr or size 1: one rank, local kernels
  parallel::Options options;         // schedule (and link model) of the exchange
  int64_t block_size = 0;            // kernels' block size; 0 = the backend default
  // Packed documents (kernels/documents.h, Problem::docs): the pieces of this shard when the
  // (single, B = 1) batch row holds several documents; each document starts from a zero state.
  // On one rank the kernels run them; sharded calls need parallel/ support for p.docs.
  // nullptr = every row is one sequence.
  const kernels::LocalDocuments* documents = nullptr;
};

// o = lightning attention of (q, k, v) with per-head decay and scale c, differentiable in
// q, k and v through parallel::forward / parallel::backward over `group`.
torch::Tensor lightning_attention(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v, const torch::Tensor& decay, double scale,
                                  const AttentionGroup& group);

// The same autograd Function with the whole interface of the Python op (the Autograd kernel of
// lightring::attention, csrc/attention_op.cpp), in the kernels' layout:
//   q, k [B, H, N, D], v [B, H, N, E]: views with a contiguous last dim (a [B, N, H, *] tensor
//   is passed as its transpose(1, 2)); decay [H] fp32, or undefined for s = 0;
//   initial_state S_{-1} [B, H, D, E] fp32, or undefined for 0;
//   output_final_state: also return S_{N-1}, and accept its gradient in backward.
// Returns {o [B, H, N, E] (memory order of v), final [B, H, D, E] fp32, or a [0] tensor that is
// not differentiable when output_final_state is false}. Autograd covers q, k, v and
// initial_state; it is first order only (differentiating a returned gradient raises).
// group: nullptr for one rank; a sharded group takes no initial or final state.
std::vector<torch::Tensor> lightning_attention_states(
    const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
    const torch::Tensor& decay, const torch::Tensor& initial_state, double scale,
    bool output_final_state, int64_t block_size, const AttentionGroup* group);

}  // namespace lightring::model
