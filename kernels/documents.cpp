// Packed documents (kernels/documents.h) on any backend: each document piece of the shard is a
// sub-problem of its own, the inputs and outputs seen through offset pointers and its states
// through [K,H,D,E] views, so every backend entry point runs documents unchanged. Consecutive
// pieces of equal length whose states are all document states are one sub-problem of batch
// m: piece j of the run is batch element j, at batch stride L·(seq stride) (B = 1, so the rows
// of the run are m·L consecutive rows of the stream, and [m,H,D,E] is the run's slice of the
// per-piece states).
//
// Only two pieces depend on the exchange: piece 0 when it continues a document (forward: it
// enters with S_in) and piece K-1 when it goes on to the right (backward: it receives G).
// The two-phase passes run every other piece to completion in phase 1 and keep a pass of the
// backend for the dependent piece.
#include <algorithm>
#include <optional>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/documents_impl.h"
#include "kernels/state_ops.h"

namespace lightring::kernels {

void check_cu_seqlens(const int64_t* cu, int64_t num_docs, int64_t total, const char* name) {
  LR_CHECK(cu != nullptr, name, " must not be null");
  LR_CHECK(num_docs >= 1, name, " must hold at least 2 offsets [0, ..., T] (got ", num_docs + 1,
           ")");
  LR_CHECK(cu[0] == 0, name, "[0] must be 0 (got ", cu[0], ")");
  for (int64_t i = 1; i <= num_docs; ++i)
    LR_CHECK(cu[i] > cu[i - 1], name, " must be strictly increasing (", name, "[", i - 1,
             "] = ", cu[i - 1], ", ", name, "[", i, "] = ", cu[i],
             "): every document has at least one token");
  LR_CHECK(cu[num_docs] == total, name, "[-1] must be the total length T = ", total, " (got ",
           cu[num_docs], ")");
}

LocalDocuments local_documents(const int64_t* cu, int64_t num_docs, int64_t start, int64_t length) {
  LR_CHECK(length >= 1 && start >= 0 && start + length <= cu[num_docs], "local_documents: shard [",
           start, ", ", start + length, ") is not inside [0, ", cu[num_docs], ")");
  const int64_t end = start + length;
  // The document holding `start`: the last d with cu[d] <= start.
  const int64_t first = std::upper_bound(cu, cu + num_docs + 1, start) - cu - 1;
  LocalDocuments l;
  l.first = first;
  l.continues = cu[first] < start;
  l.offsets.push_back(0);
  int64_t d = first + 1;
  for (; d < num_docs && cu[d] < end; ++d) l.offsets.push_back(cu[d] - start);
  l.offsets.push_back(length);
  l.ends = cu[d] == end;
  return l;
}

namespace {

using documents::Fanout;
using documents::Run;

size_t per_piece(const Problem& p) {
  return static_cast<size_t>(p.heads * p.qk_dim * p.v_dim);
}

template <typename T>
const T* offset_rows(const T* ptr, int64_t rows, const Strides& s, DType dtype) {
  return reinterpret_cast<const T*>(reinterpret_cast<const char*>(ptr) +
                                    rows * s.seq * static_cast<int64_t>(dtype_size(dtype)));
}
inline void* offset_rows(void* ptr, int64_t rows, const Strides& s, DType dtype) {
  return const_cast<void*>(offset_rows(static_cast<const void*>(ptr), rows, s, dtype));
}

// The run of pieces [i, i + m) of length L as a view of s: its first row, batch stride m·L.
Strides run_strides(Strides s, int64_t len) {
  s.batch = len * s.seq;
  return s;
}

// The runs of pieces [lo, hi): equal lengths, batched.
std::vector<Run> runs_of(const Documents& d, int64_t lo, int64_t hi) {
  std::vector<Run> runs;
  for (int64_t i = lo; i < hi;) {
    int64_t j = i + 1;
    while (j < hi && d.length(j) == d.length(i)) ++j;
    runs.push_back({i, j});
    i = j;
  }
  return runs;
}

const float* piece_state(const float* states, const Problem& p, int64_t piece) {
  return states ? states + piece * per_piece(p) : nullptr;
}
float* piece_state(float* states, const Problem& p, int64_t piece) {
  return states ? states + piece * per_piece(p) : nullptr;
}

// The sub-problem of pieces [r.begin, r.end) of a forward, with document states; the caller
// replaces the entering / leaving states of a dependent piece.
ForwardParams sub_forward(const ForwardParams& p, Run r) {
  ForwardParams s = p;
  s.docs = Documents{};
  const int64_t o = p.docs.offsets[r.begin], len = p.docs.length(r.begin);
  s.batch = r.end - r.begin;
  s.seqlen = len;
  s.q = offset_rows(p.q, o, p.q_stride, p.dtype);
  s.k = offset_rows(p.k, o, p.k_stride, p.dtype);
  s.v = offset_rows(p.v, o, p.v_stride, p.dtype);
  s.o = offset_rows(p.o, o, p.o_stride, p.dtype);
  s.q_stride = run_strides(p.q_stride, len);
  s.k_stride = run_strides(p.k_stride, len);
  s.v_stride = run_strides(p.v_stride, len);
  s.o_stride = run_strides(p.o_stride, len);
  s.initial_state = piece_state(p.doc_initial_states, p, r.begin);
  s.final_state = piece_state(p.doc_final_states, p, r.begin);
  s.doc_initial_states = nullptr;
  s.doc_final_states = nullptr;
  return s;
}

BackwardParams sub_backward(const BackwardParams& p, Run r) {
  BackwardParams s = p;
  s.docs = Documents{};
  const int64_t o = p.docs.offsets[r.begin], len = p.docs.length(r.begin);
  s.batch = r.end - r.begin;
  s.seqlen = len;
  s.q = offset_rows(p.q, o, p.q_stride, p.dtype);
  s.k = offset_rows(p.k, o, p.k_stride, p.dtype);
  s.v = offset_rows(p.v, o, p.v_stride, p.dtype);
  s.d_o = offset_rows(p.d_o, o, p.do_stride, p.dtype);
  s.dq = offset_rows(p.dq, o, p.dq_stride, p.dtype);
  s.dk = offset_rows(p.dk, o, p.dk_stride, p.dtype);
  s.dv = offset_rows(p.dv, o, p.dv_stride, p.dtype);
  s.q_stride = run_strides(p.q_stride, len);
  s.k_stride = run_strides(p.k_stride, len);
  s.v_stride = run_strides(p.v_stride, len);
  s.do_stride = run_strides(p.do_stride, len);
  s.dq_stride = run_strides(p.dq_stride, len);
  s.dk_stride = run_strides(p.dk_stride, len);
  s.dv_stride = run_strides(p.dv_stride, len);
  s.initial_state = piece_state(p.doc_initial_states, p, r.begin);
  s.d_final_state = piece_state(p.d_doc_final_states, p, r.begin);
  s.d_initial_state = piece_state(p.d_doc_initial_states, p, r.begin);
  s.doc_initial_states = nullptr;
  s.d_doc_final_states = nullptr;
  s.d_doc_initial_states = nullptr;
  return s;
}

// Longest runs first, so that the side streams finish together.
std::vector<Run> by_size(std::vector<Run> runs, const Documents& d) {
  std::stable_sort(runs.begin(), runs.end(), [&](const Run& a, const Run& b) {
    return (a.end - a.begin) * d.length(a.begin) > (b.end - b.begin) * d.length(b.begin);
  });
  return runs;
}

// Pieces [lo, hi) to completion; the last piece of the shard (hi == K) writes its final state
// into `last` as well when it is given (a state the pass keeps, or the caller's final_state).
void forward_pieces(const ForwardParams& p, int64_t lo, int64_t hi, float* last) {
  const int64_t K = p.docs.count;
  std::vector<Run> runs = runs_of(p.docs, lo, hi == K ? K - 1 : hi);
  const std::vector<int64_t> short_pieces =
      documents::take_short(p.docs, &runs, documents::may_pad(p, p.doc_initial_states, nullptr));
  runs = by_size(std::move(runs), p.docs);
  const bool with_last = hi == K && lo < K;
  Fanout fan(p,
             runs.size() + (with_last ? 1 : 0) + documents::padded_batches(p.docs, short_pieces));
  documents::forward_padded(p, short_pieces, &fan);
  if (with_last) {
    ForwardParams s = sub_forward(p, {K - 1, K});
    s.final_state = last;
    s.stream = fan.next();
    forward(s);
    if (p.docs.ends && p.doc_final_states && last)
      copy_state(p.device, piece_state(p.doc_final_states, p, K - 1), last, per_piece(p), s.stream);
  }
  for (const Run& r : runs) {
    ForwardParams s = sub_forward(p, r);
    s.stream = fan.next();
    forward(s);
  }
  fan.join();
}

// The first piece's sub-problem when it continues a document: S_in enters, and when it is
// also the last piece that goes on, its state leaves as the shard's final state.
ForwardParams continuing_first(const ForwardParams& p, const float* s_in) {
  ForwardParams s = sub_forward(p, {0, 1});
  s.initial_state = s_in;
  if (!p.docs.ends_document(0)) s.final_state = nullptr;
  return s;
}

class DocumentsForwardPass final : public ForwardPass::Impl {
 public:
  explicit DocumentsForwardPass(const ForwardParams& p) : p_(p) {
    const Documents& d = p.docs;
    const int64_t lo = d.continues ? 1 : 0;
    if (lo < d.count) {
      last_ = StateBuffer(p.device, per_piece(p), p.stream);
      forward_pieces(p, lo, d.count, last_.data());
    }
    if (d.continues) first_.emplace(continuing_first(p, nullptr));
  }

  const float* local_state() override {
    if (forward_reset(p_.docs)) return last_.data();
    return first_->local_state();  // one piece, continuing: the plain pair
  }

  void finish(const float* initial_state, float* final_state) override {
    const Documents& d = p_.docs;
    const size_t n = per_piece(p_);
    if (first_) {
      // Piece 0: S_in enters; its leaving state is a document's final state, or (one piece
      // that goes on) the shard's final state.
      float* out = d.count == 1 ? final_state : piece_state(p_.doc_final_states, p_, 0);
      if (d.count == 1 && d.ends) out = final_state ? final_state : p_.doc_final_states;
      first_->finish(initial_state, out);
      if (d.count == 1 && d.ends && final_state && p_.doc_final_states)
        copy_state(p_.device, p_.doc_final_states, final_state, n, p_.stream);
    }
    if (final_state && (d.count > 1 || !d.continues))
      copy_state(p_.device, final_state, last_.data(), n, p_.stream);
  }

 private:
  ForwardParams p_;
  StateBuffer last_;  // the state after the last piece, when phase 1 computed it
  std::optional<ForwardPass> first_;
};

// Piece 0's gradient targets when it continues: dS_in leaves to the left, or to a document's
// initial state when the piece does not continue.
class DocumentsBackwardPass final : public BackwardPass::Impl {
 public:
  explicit DocumentsBackwardPass(const BackwardParams& p) : p_(p) {
    const Documents& d = p.docs;
    const int64_t K = d.count, hi = d.ends ? K : K - 1;
    if (0 < hi) {
      // Piece 0 of a continuing shard enters with S_in and leaves dS_in to the left: it is its
      // own sub-problem, its dS_in kept for finish().
      const int64_t lo = d.continues ? 1 : 0;
      if (d.continues) first_ = StateBuffer(p.device, per_piece(p), p.stream);
      std::vector<Run> runs = runs_of(d, lo, hi);
      const std::vector<int64_t> short_pieces = documents::take_short(
          d, &runs, documents::may_pad(p, p.doc_initial_states, p.d_doc_initial_states));
      runs = by_size(std::move(runs), d);
      Fanout fan(p,
                 runs.size() + (d.continues ? 1 : 0) + documents::padded_batches(d, short_pieces));
      documents::backward_padded(p, short_pieces, &fan);
      if (d.continues) {
        BackwardParams s = sub_backward(p, {0, 1});
        s.initial_state = p.initial_state;
        s.d_initial_state = first_.data();
        s.stream = fan.next();
        backward(s);
      }
      for (const Run& r : runs) {
        BackwardParams s = sub_backward(p, r);
        s.stream = fan.next();
        backward(s);
      }
      fan.join();
    }
    if (!d.ends) {
      BackwardParams s = sub_backward(p, {K - 1, K});
      s.d_final_state = nullptr;
      if (K == 1 && d.continues) s.initial_state = p.initial_state;
      last_.emplace(s);
    }
  }

  const float* local_state() override {
    if (!p_.docs.continues) {
      // Nothing leaves to the left: S_in is not read.
      if (zero_.count() == 0) {
        zero_ = StateBuffer(p_.device, per_piece(p_), p_.stream);
        fill_zero(p_.device, zero_.data(), per_piece(p_), p_.stream);
      }
      return zero_.data();
    }
    if (backward_reset(p_.docs)) return first_.data();
    return last_->local_state();  // one piece, continuing, going on: the plain pair
  }

  void finish(const float* d_final_state, float* d_initial_state) override {
    const Documents& d = p_.docs;
    const size_t n = per_piece(p_);
    if (last_) {
      const int64_t K = d.count;
      float* out =
          K == 1 && d.continues ? d_initial_state : piece_state(p_.d_doc_initial_states, p_, K - 1);
      last_->finish(d_final_state, out);
      if (K == 1 && d.continues) return;
    }
    if (!d_initial_state) return;
    if (d.continues) {
      copy_state(p_.device, d_initial_state, first_.data(), n, p_.stream);
    } else {
      fill_zero(p_.device, d_initial_state, n, p_.stream);
    }
  }

 private:
  BackwardParams p_;
  StateBuffer first_;  // dS_in of piece 0 (continuing) when phase 1 computed it
  StateBuffer zero_;
  std::optional<BackwardPass> last_;  // the piece that goes on to the right
};

}  // namespace

namespace documents {

void forward(const ForwardParams& p) {
  DocumentsForwardPass pass(p);
  pass.finish(p.initial_state, p.final_state);
}

void backward(const BackwardParams& p) {
  DocumentsBackwardPass pass(p);
  pass.finish(p.d_final_state, p.d_initial_state);
}

std::unique_ptr<ForwardPass::Impl> forward_pass(const ForwardParams& p) {
  return std::make_unique<DocumentsForwardPass>(p);
}

std::unique_ptr<BackwardPass::Impl> backward_pass(const BackwardParams& p) {
  return std::make_unique<DocumentsBackwardPass>(p);
}

}  // namespace documents

}  // namespace lightring::kernels
