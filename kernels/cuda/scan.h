// The one device primitive of the CUDA backend: a chunked linear-attention
// scan over a "view" of the sequence, and the segment combine around it.
//
// For every (b, h), rows t = 0..N-1 of the view, kernel dims dk (q, k) and dv
// (v, o), decay λ = exp(-s_h), scales (c_intra, c_inter, c_state) and a
// shift σ ∈ {0, 1}, the scan computes
// the block form of docs/algorithm.md §2 with 64-row chunks: for a chunk of
// L rows, local row r, entering state X,
//
//     O      = c_intra·[(Q Kᵀ) ⊙ M] V + c_inter·diag(λ^{r+1-σ}) Q X
//     X_next = λ^L X + c_state·Kᵀ diag(λ^{L-1-r+σ}) V
//
// Every pass of the backend is this scan on a view (docs/algorithm.md §2):
//   forward:  q=Q,  k=K,  v=V,  X=S,   σ=0, (c, c, 1)           -> O, S_final
//   dQ:       q=dO, k=V,  v=K,  X=Sᵀ,  σ=0, (c, c, 1)           -> dQ
//   dV:       q=K,  k=Q,  v=dO, X=dS,  σ=1, (c, 1, c), reversed -> dV, dS0
//   dK:       q=V,  k=dO, v=Q,  X=dSᵀ, σ=1, (c, 1, c), reversed -> dK
// where "reversed" is the view t' = N-1-t (a negative seq stride): running
// the reversed scan from X = G gives X = dS(i+1) at each chunk, as §2 needs.
//
// Segments (§3): the view is cut into num_segs segments of seg_len rows
// (a multiple of 64); each CTA owns one (b·h, segment, dv-slice). A state
// pass (o == nullptr) writes each segment's local pair X_g from a zero state;
// combine() turns them into the state entering each segment; the output pass
// then starts every segment from its entering state.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace lightring::kernels::cuda {

constexpr int kChunk = 64;  // rows per chunk (the block size B of §2)

// One [B, H, N, dim] operand seen through a view: element (b, h, t, j) at
// ptr + b*sb + h*sh + t*st + j. st may be negative (reversed views).
struct Operand {
  const void* ptr = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
};

// A [B·H, G, dk, dv] fp32 state array: element (bh, g, i, j) at
// ptr + bh*sbh + g*sg + i*si + j*sj.
struct StateRef {
  float* ptr = nullptr;
  int64_t sbh = 0, sg = 0, si = 0, sj = 0;
};

// The fused scan's chain (scan_wgmma.cuh, Mode::kFused): counter[0] is the CTA ticket and
// counter[1 + lane] the count of segments lane (b·h, dv slice) has published (the launcher zeroes
// them); ring holds two fp32 states per lane (fused_workspace_floats).
struct Chain {
  int* counter = nullptr;
  float* ring = nullptr;
};

// Packed documents inside a view (kernels/documents.h; kernels/cuda/doc_chunks.h builds them):
// the view's rows [0, N) cut into chunks of at most kChunk rows that never cross a document
// boundary (a document's last chunk may be short; the next document starts a new chunk), in view
// order. Segment g owns chunks [g·per_seg, min(count, (g+1)·per_seg)). Per chunk:
//   start_doc >= 0: the chunk's first row starts document start_doc of the view: X entering the
//                   chunk is init[start_doc] (0 when init.ptr is null), whatever came before;
//   end_doc   >= 0: its last row ends document end_doc: X after the chunk goes to final[end_doc]
//                   (skipped when final.ptr is null; output passes only).
// A segment's pair scalar (the chain and combine) is 0 when one of its chunks starts a document,
// else λ^{rows}: DocSegment.
struct DocChunk {
  int32_t t0 = 0, len = 0;  // first view row, rows (1..kChunk)
  int32_t start_doc = -1, end_doc = -1;
};
struct DocSegment {
  int64_t rows = 0;   // rows of the segment
  int64_t reset = 0;  // 1: a document starts inside the segment
};
// Per-document states [docs, B·H, dk, dv]: element (d, bh, i, j) at ref(bh, i, j) + d·doc_stride.
struct DocStates {
  StateRef ref;
  int64_t doc_stride = 0;
};
struct DocChunks {
  const DocChunk* chunks = nullptr;  // device, count entries; nullptr: no documents
  const DocSegment* segs = nullptr;  // device, one per segment
  int count = 0, per_seg = 0;
  DocStates init, final;
};

struct ScanParams {
  DType dtype = DType::kBFloat16;
  int64_t batch = 0, heads = 0, seqlen = 0;
  int dk = 0, dv = 0;
  Operand q, k, v;
  void* o = nullptr;  // nullptr: state pass (no outputs, q unused)
  int64_t o_sb = 0, o_sh = 0, o_st = 0;
  const float* decay = nullptr;  // [H] device, s_h; nullptr means 0
  float c_intra = 1.0f, c_inter = 1.0f, c_state = 1.0f;
  int shift = 0;  // σ
  // The decay window of state passes (wgmma): a state pass (or the fused scan's state phase) skips
  // the chunks whose rows all enter the segment's state with weight λ^d < e^-window (d: rows
  // after the row in the segment), i.e. s·d >= window; 0 keeps every chunk. base_params sets
  // 64·ln 2 (weights below 2^-64, far under fp32 rounding of the kept terms;
  // KernelTuning::decay_window = false turns it off).
  float window = 0.0f;
  int64_t seg_len = 0;  // multiple of kChunk
  int num_segs = 1;
  StateRef state_in;   // entering state per segment; ptr nullptr means 0
  StateRef state_out;  // final state of each segment's scan; ptr nullptr to skip
  int stages = 1;      // tf32 family: set by its launcher, cp.async stages of the tiles (1 or 2)
  // Set: the fused single-pass output scan (wgmma only; fused_runs): state_in / state_out are the
  // view's initial and final states (sg = 0) instead of per-segment ones.
  Chain chain;
  // Set: the view holds packed documents (wgmma only; seg_len and num_segs then describe the
  // chunk segments of the table, seg_len unused by the kernel).
  DocChunks docs;
};

// Launches the scan. Throws lightring::Error on a CUDA error.
void scan(const ScanParams& p, void* stream);

// Whether the wgmma family runs p (family.h: wgmma_covers, and 16-byte aligned rows of k, v and,
// for an output pass, q).
bool wgmma_runs(const ScanParams& p);

// Whether the fused single-pass scan runs the output scan p (wgmma_runs, and
// KernelTuning::fused, which tests and benchmarks switch off to compare it with the state pass
// + combine + output pass it replaces).
bool fused_runs(const ScanParams& p);

// fp32 workspace of the fused scan p: the counters, then two states per lane.
size_t fused_workspace_floats(const ScanParams& p);

// The chain of p inside that workspace.
Chain fused_chain(float* ws, const ScanParams& p);

// Segment combine (docs/algorithm.md §3), in place on a [B·H, G, dk, dv]
// contiguous array of local pairs X_g:
//     ws[g] <- X_in(g),  X_in(0) = init,  X_in(g+1) = λ^{L_g}·X_in(g) + X_g
// init ([B·H, dk, dv], may be null = 0); final_out ([B·H, dk, dv], may be null)
// receives X_in(G). L_g = min(seg_len, N - g·seg_len).
// segs (device, may be null): per segment rows and reset (DocSegment) instead of seg_len rows;
// a segment with a reset has a_g = 0.
void combine(float* ws, int64_t bh, int num_segs, int64_t seg_len, int64_t seqlen, int64_t heads,
             int dk, int dv, const float* decay, const float* init, float* final_out, void* stream,
             const DocSegment* segs = nullptr);

// The X part of one combine, y <- λ_h^len·x + y on [batch, heads, per_head] fp32
// contiguous arrays (kernels/state_ops.h, axpy_decay), enqueued on `stream`.
void axpy_decay(float* y, const float* x, const float* decay, int64_t batch, int64_t heads,
                int64_t per_head, int64_t len, void* stream);

// Width of the dv slice one CTA owns, per element type.
inline int slice_width(DType t) {
  return t == DType::kFloat32 ? 32 : 64;
}

}  // namespace lightring::kernels::cuda
