// Short document pieces as front-padded batches (kernels/documents_impl.h): the pieces of one
// padded length Lp become the n rows of one [n, H, Lp, dim] sub-problem, gathered from the
// stream and scattered back through kernels/row_map.h. Row b of the batch holds piece i with
// its L tokens at positions Lp - L … Lp - 1 and zeros before them.
#include <map>

#include "core/error.h"
#include "kernels/documents_impl.h"
#include "kernels/row_map.h"
#include "kernels/state_ops.h"

namespace lightring::kernels::documents {

namespace {

int64_t padded_length(int64_t len) {
  return (len + kPadQuantum - 1) / kPadQuantum * kPadQuantum;
}

// The pieces grouped by padded length.
std::map<int64_t, std::vector<int64_t>> buckets(const Documents& d,
                                                const std::vector<int64_t>& pieces) {
  std::map<int64_t, std::vector<int64_t>> b;
  for (int64_t i : pieces) b[padded_length(d.length(i))].push_back(i);
  return b;
}

// One padded batch: its pieces, Lp, and the maps of its token rows and of its states.
struct Batch {
  const Problem& p;
  const std::vector<int64_t>& pieces;
  int64_t lp;
  void* stream;
  std::vector<int64_t> token_map, state_map;

  Batch(const Problem& prob, const Documents& d, const std::vector<int64_t>& ps, int64_t padded,
        void* s)
      : p(prob), pieces(ps), lp(padded), stream(s) {
    const int64_t n = static_cast<int64_t>(ps.size());
    token_map.assign(n * lp, -1);
    for (int64_t b = 0; b < n; ++b) {
      const int64_t len = d.length(ps[b]), o = d.offsets[ps[b]];
      for (int64_t t = 0; t < len; ++t) token_map[b * lp + (lp - len) + t] = o + t;
      state_map.push_back(ps[b]);
    }
  }
  int64_t n() const { return static_cast<int64_t>(pieces.size()); }

  RowMap tokens(const Strides& s, int64_t dim) const {
    RowMap m;
    m.device = p.device;
    m.dtype = p.dtype;
    m.stream = stream;
    m.rows = n() * lp;
    m.padded_len = lp;
    m.heads = p.heads;
    m.dim = dim;
    m.stream_strides = s;
    m.map = token_map.data();
    return m;
  }
  RowMap states() const {
    RowMap m;
    m.device = p.device;
    m.dtype = DType::kFloat32;
    m.stream = stream;
    m.rows = n();
    m.padded_len = 1;
    m.heads = 1;
    m.dim = p.heads * p.qk_dim * p.v_dim;
    m.stream_strides = Strides{0, 0, m.dim};
    m.map = state_map.data();
    return m;
  }
  // A [n, H, Lp, dim] buffer of the element type (or of fp32 states when dim = 0).
  StateBuffer buffer(int64_t dim) const {
    if (dim == 0) return StateBuffer(p.device, n() * p.heads * p.qk_dim * p.v_dim, stream);
    const size_t bytes = static_cast<size_t>(n() * p.heads * lp * dim) * dtype_size(p.dtype);
    return StateBuffer(p.device, (bytes + 3) / 4, stream);
  }
  Strides strides(int64_t dim) const { return contiguous_bhnd(p.heads, lp, dim); }
};

void set_padded_shape(Problem* s, const Batch& b) {
  s->docs = Documents{};
  s->batch = b.n();
  s->seqlen = b.lp;
  s->stream = b.stream;
}

}  // namespace

bool may_pad(const Problem& p, const float* doc_initial_states, const float* d_doc_initial_states) {
  using Pad = KernelTuning::PadShort;
  const Pad mode = kernel_tuning().pad_short_documents;
  if (mode == Pad::kOff || (mode == Pad::kAuto && p.device != Device::kCuda)) return false;
  return doc_initial_states == nullptr && d_doc_initial_states == nullptr;
}

std::vector<int64_t> take_short(const Documents& d, std::vector<Run>* runs, bool allowed) {
  std::vector<int64_t> pieces;
  if (!allowed) return pieces;
  std::vector<Run> kept;
  for (const Run& r : *runs) {
    if (d.length(r.begin) <= kShortPiece && r.end - r.begin < kShortRun) {
      for (int64_t i = r.begin; i < r.end; ++i) pieces.push_back(i);
    } else {
      kept.push_back(r);
    }
  }
  *runs = std::move(kept);
  return pieces;
}

size_t padded_batches(const Documents& d, const std::vector<int64_t>& pieces) {
  return buckets(d, pieces).size();
}

void forward_padded(const ForwardParams& p, const std::vector<int64_t>& pieces, Fanout* fan) {
  for (const auto& [lp, group] : buckets(p.docs, pieces)) {
    const Batch b(p, p.docs, group, lp, fan->next());
    StateBuffer q = b.buffer(p.qk_dim), k = b.buffer(p.qk_dim), v = b.buffer(p.v_dim),
                o = b.buffer(p.v_dim), finals;
    gather_rows(b.tokens(p.q_stride, p.qk_dim), p.q, q.data());
    gather_rows(b.tokens(p.k_stride, p.qk_dim), p.k, k.data());
    gather_rows(b.tokens(p.v_stride, p.v_dim), p.v, v.data());
    ForwardParams s = p;
    set_padded_shape(&s, b);
    s.q = q.data();
    s.k = k.data();
    s.v = v.data();
    s.o = o.data();
    s.q_stride = s.k_stride = b.strides(p.qk_dim);
    s.v_stride = s.o_stride = b.strides(p.v_dim);
    s.initial_state = nullptr;
    if (p.doc_final_states) finals = b.buffer(0);
    s.final_state = p.doc_final_states ? finals.data() : nullptr;
    s.doc_initial_states = nullptr;
    s.doc_final_states = nullptr;
    kernels::forward(s);
    scatter_rows(b.tokens(p.o_stride, p.v_dim), o.data(), p.o);
    if (p.doc_final_states) scatter_rows(b.states(), finals.data(), p.doc_final_states);
  }  // the buffers are freed on their stream, after their last use (stream-ordered)
}

void backward_padded(const BackwardParams& p, const std::vector<int64_t>& pieces, Fanout* fan) {
  for (const auto& [lp, group] : buckets(p.docs, pieces)) {
    const Batch b(p, p.docs, group, lp, fan->next());
    StateBuffer q = b.buffer(p.qk_dim), k = b.buffer(p.qk_dim), v = b.buffer(p.v_dim),
                d_o = b.buffer(p.v_dim), dq = b.buffer(p.qk_dim), dk = b.buffer(p.qk_dim),
                dv = b.buffer(p.v_dim), g;
    gather_rows(b.tokens(p.q_stride, p.qk_dim), p.q, q.data());
    gather_rows(b.tokens(p.k_stride, p.qk_dim), p.k, k.data());
    gather_rows(b.tokens(p.v_stride, p.v_dim), p.v, v.data());
    gather_rows(b.tokens(p.do_stride, p.v_dim), p.d_o, d_o.data());
    if (p.d_doc_final_states) {
      g = b.buffer(0);
      gather_rows(b.states(), p.d_doc_final_states, g.data());
    }
    BackwardParams s = p;
    set_padded_shape(&s, b);
    s.q = q.data();
    s.k = k.data();
    s.v = v.data();
    s.d_o = d_o.data();
    s.dq = dq.data();
    s.dk = dk.data();
    s.dv = dv.data();
    s.q_stride = s.k_stride = s.dq_stride = s.dk_stride = b.strides(p.qk_dim);
    s.v_stride = s.do_stride = s.dv_stride = b.strides(p.v_dim);
    s.initial_state = nullptr;
    s.d_final_state = p.d_doc_final_states ? g.data() : nullptr;
    s.d_initial_state = nullptr;
    s.doc_initial_states = nullptr;
    s.d_doc_final_states = nullptr;
    s.d_doc_initial_states = nullptr;
    kernels::backward(s);
    scatter_rows(b.tokens(p.dq_stride, p.qk_dim), dq.data(), p.dq);
    scatter_rows(b.tokens(p.dk_stride, p.qk_dim), dk.data(), p.dk);
    scatter_rows(b.tokens(p.dv_stride, p.v_dim), dv.data(), p.dv);
  }
}

}  // namespace lightring::kernels::documents
