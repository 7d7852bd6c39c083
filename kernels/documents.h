// Packed documents (docs/algorithm.md §5): a stream of B = 1 sequence that holds several
// independent documents, each a causal Lightning Attention-2 sequence of its own. At a
// document's first token the state restarts from that document's initial state (zero when
// none is given), and no state flows from one document into the next:
//
//     S_t = λ·S_{t-1} + k_tᵀ v_t   inside a document,   S_{start-1} = S0[doc]
//
// A shard of the stream (the local sequence of kernels/attention.h) is cut at the document
// boundaries that fall inside it into K pieces, 0 = o_0 < o_1 < … < o_K = N (local offsets).
// Piece i belongs to document first + i of the stream (LocalDocuments::first). Piece 0 may
// continue a document that began in an earlier shard (Documents::continues): it enters with
// the shard's initial state S_in instead of a document initial state. The last piece may go on
// in the next shard (!Documents::ends): its state leaves as the shard's final state S_out and
// no document final state is written for it.
//
// The state pair of a shard (§3, (a, X) with X the state after the shard from a zero S_in)
// keeps its meaning; its scalar a is λ^N only when no document starts inside the shard
// (forward_reset false) and 0 otherwise, which is what makes the exchange stop at a document
// start. The backward pair (b, C) with dS_in = b·G + C mirrors it: b is 0 unless the shard is
// one piece that continues a document and goes on into the next shard (backward_reset false).
// A shard that starts a document at its first token does not read S_in at all, so there
// dS_in = 0 (b = 0, C = 0).
#pragma once

#include <cstdint>
#include <vector>

namespace lightring::kernels {

// The document pieces of one shard, as the kernels read them. A default Documents (offsets
// null) is a single sequence: the API of kernels/attention.h without documents.
struct Documents {
  const int64_t* offsets = nullptr;  // host, count + 1 local offsets 0 = o_0 < … < o_K = N
  int64_t count = 0;                 // K >= 1 pieces when offsets is set
  bool continues = false;            // piece 0 continues a document begun before the shard
  bool ends = true;                  // piece K-1 ends its document at the shard's last token

  bool enabled() const { return offsets != nullptr; }
  int64_t length(int64_t piece) const { return offsets[piece + 1] - offsets[piece]; }
  // Whether piece i starts its document inside the shard (reads a document initial state).
  bool starts_document(int64_t piece) const { return piece > 0 || !continues; }
  // Whether piece i ends its document inside the shard (writes a document final state).
  bool ends_document(int64_t piece) const { return piece + 1 < count || ends; }
};

// A document starts at some position in [0, N): the forward pair's scalar is 0, the exchange
// passes nothing from the shards before this one to the shards after it.
inline bool forward_reset(const Documents& d) {
  return d.enabled() && (d.count > 1 || !d.continues);
}
// G (the gradient of S_out) does not reach S_in: a document ends inside the shard, or the
// shard does not read S_in (its first token starts a document). The backward pair's scalar is 0.
inline bool backward_reset(const Documents& d) {
  return d.enabled() && (d.count > 1 || d.ends || !d.continues);
}

// The pieces of the shard [start, start + length) of a packed stream whose document offsets
// (the FlashAttention / FLA cu_seqlens convention) are cu[0..num_docs], owned by value.
struct LocalDocuments {
  std::vector<int64_t> offsets;  // local, offsets.front() = 0, offsets.back() = length
  int64_t first = 0;             // the stream's index of the document of piece 0
  bool continues = false;
  bool ends = true;

  Documents view() const {
    Documents d;
    d.offsets = offsets.data();
    d.count = static_cast<int64_t>(offsets.size()) - 1;
    d.continues = continues;
    d.ends = ends;
    return d;
  }
};

// Throws lightring::Error naming `name` unless cu[0..num_docs] is 0 = cu[0] < cu[1] < … <
// cu[num_docs] = total (num_docs >= 1): the first offending index and values are in the message.
void check_cu_seqlens(const int64_t* cu, int64_t num_docs, int64_t total,
                      const char* name = "cu_seqlens");

// The pieces of shard [start, start + length) (length >= 1, inside [0, cu[num_docs]]);
// cu must pass check_cu_seqlens.
LocalDocuments local_documents(const int64_t* cu, int64_t num_docs, int64_t start, int64_t length);

}  // namespace lightring::kernels
