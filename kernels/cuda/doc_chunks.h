// The chunk tables of a shard's packed documents (scan.h: DocChunks), built on the host from the
// pieces of kernels/documents.h and uploaded once per pass, so that one scan runs every document
// of the shard with the boundaries inside its chunk loop (docs/algorithm.md §5).
//
// Chunks: piece i = rows [o_i, o_{i+1}) is cut into 64-row chunks from o_i, its last chunk short
// when the length is not a multiple of 64. In the forward direction (forward, dQ) a piece's first
// chunk starts document i when the piece starts its document (Documents::starts_document) and its
// last chunk ends document i when the piece ends it. The reversed views (dV, dK, the dS pass; t' =
// N-1-t) hold the same chunks in reverse order, and a reversed chunk starts where the forward one
// ends and ends where it starts: the gradient of a document's final state enters at its last row
// and the gradient of its initial state leaves at its first.
//
// Segments: the plan's G segments become ceil(count / per_seg) segments of per_seg =
// ceil(count / G) chunks (each non-empty), in each direction.
#pragma once

#include <cuda_runtime.h>

#include <optional>

#include "kernels/cuda/scan.h"
#include "kernels/cuda/segments.h"
#include "kernels/documents.h"

namespace lightring::kernels::cuda {

class DocTables {
 public:
  // d enabled; seqlen = N (< 2^31); num_segs: the segment count the plan chose (>= 1).
  DocTables(const Documents& d, int64_t seqlen, int num_segs, cudaStream_t stream);

  int num_segs() const { return num_segs_; }
  // The table of the forward-direction views and of the reversed ones, with the per-document
  // states they read (init) and write (final; output passes).
  DocChunks forward(const DocStates& init, const DocStates& final) const;
  DocChunks reversed(const DocStates& init, const DocStates& final) const;

 private:
  int count_ = 0, per_seg_ = 0, num_segs_ = 0;
  std::optional<Workspace>
      mem_;  // forward chunks, reversed chunks, forward segments, reversed segments
};

// [K, H, rows, cols] fp32 per-piece states of a B = 1 problem seen as the kernel's [dk = rows][dv
// = cols] per document (transposed: a [K, H, cols, rows] array, element (i, j) = X[j][i]), or
// unset when states is null.
DocStates doc_states(const float* states, int64_t heads, int64_t rows, int64_t cols,
                     bool transposed = false);

}  // namespace lightring::kernels::cuda
