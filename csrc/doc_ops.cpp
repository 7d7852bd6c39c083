// The registered ops lightring::forward_docs / backward_docs: one shard of a packed stream of
// documents (kernels/documents.h) on this process. The shard is cut at the document boundaries
// inside it into K pieces; `offsets` holds the K + 1 local offsets 0 = o_0 < … < o_K = N (int64,
// on the host), `continues` says whether piece 0 continues a document begun in an earlier shard,
// `ends` whether piece K-1 ends its document at the shard's last token. One process running
// the whole stream passes offsets = cu_seqlens, continues = false, ends = true.
//
// States, fp32 contiguous, on the device of q:
//   initial_state        [1, H, D, E] S_in, read only when continues (the prefix state)
//   doc_initial_states   [K, H, D, E] entry i read when piece i starts its document
//   doc_final_states     [K, H, D, E] (returned when asked) entry i the final state of piece
//                        i's document when piece i ends it, zero otherwise (the last piece
//                        when !ends); not asked: not computed (K states can be gigabytes)
//   final_state          [1, H, D, E] (returned when asked) the state after the last token
// Backward mirrors them: d_doc_final_states (entry i read when piece i ends its document),
// d_final_state (G, read only when !ends), and returns d_doc_initial_states (entry i when piece
// i starts its document, zero otherwise) and d_initial_state (dS_in, zero unless continues).
// Outputs not asked for are [0] tensors (csrc/ops.cpp's convention).
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <sstream>

#include "csrc/params.h"

namespace lightring::csrc {

namespace {

std::string sizes_str(at::IntArrayRef sizes) {
  std::ostringstream os;
  os << sizes;
  return os.str();
}

// The Documents view of `offsets` ([K + 1] int64 contiguous on the host); the kernels check
// the values (strictly increasing from 0 to N) and name them docs.offsets.
kernels::Documents documents_of(const at::Tensor& offsets, bool continues, bool ends) {
  LR_CHECK(offsets.defined() && offsets.dim() == 1 && offsets.numel() >= 2,
           "offsets must be a 1-D tensor of K + 1 >= 2 local document offsets (got ",
           offsets.defined() ? sizes_str(offsets.sizes()) : std::string("None"), ")");
  LR_CHECK(offsets.scalar_type() == at::kLong, "offsets must be int64 (got ", offsets.scalar_type(),
           ")");
  LR_CHECK(offsets.device().is_cpu(), "offsets must be on the cpu (got ", offsets.device(), ")");
  LR_CHECK(offsets.is_contiguous(), "offsets must be contiguous");
  kernels::Documents d;
  d.offsets = offsets.data_ptr<int64_t>();
  d.count = offsets.numel() - 1;
  d.continues = continues;
  d.ends = ends;
  return d;
}

// Checks an optional [K, H, D, E] fp32 contiguous per-piece state argument.
const float* piece_states(const Optional<at::Tensor>& s, const char* name,
                          const kernels::Problem& p, const at::Device& device) {
  if (!s.has_value() || !s->defined()) return nullptr;
  const at::Tensor& t = *s;
  const std::vector<int64_t> want{p.docs.count, p.heads, p.qk_dim, p.v_dim};
  LR_CHECK(t.sizes() == at::IntArrayRef(want), name,
           " must have shape [K, H, D, E] = ", sizes_str(want),
           ", one state per document piece of the shard (got ", sizes_str(t.sizes()), ")");
  LR_CHECK(t.scalar_type() == at::kFloat, name, " must be float32 (got ", t.scalar_type(), ")");
  LR_CHECK(t.device() == device, name, " must be on the device of q (got ", t.device(), " and ",
           device, ")");
  LR_CHECK(t.is_contiguous(), name, " must be contiguous");
  return t.data_ptr<float>();
}

at::Tensor zero_pieces(const kernels::Problem& p, const at::Device& device) {
  return at::zeros({p.docs.count, p.heads, p.qk_dim, p.v_dim},
                   at::TensorOptions().dtype(at::kFloat).device(device));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_docs_impl(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const Optional<at::Tensor>& decay, double scale, const at::Tensor& offsets, bool continues,
    bool ends, const Optional<at::Tensor>& initial_state,
    const Optional<at::Tensor>& doc_initial_states, bool output_doc_final_states,
    bool output_final_state, int64_t block_size) {
  kernels::ForwardParams p;
  static_cast<kernels::Problem&>(p) = make_problem(q, "q", &k, v, "v", decay, scale, block_size);
  p.docs = documents_of(offsets, continues, ends);
  const c10::DeviceGuard guard(q.device());
  at::Tensor o = empty_rows_like(v, p.v_dim);
  at::Tensor finals = output_doc_final_states ? zero_pieces(p, q.device()) : none_tensor(q);
  at::Tensor final_state = output_final_state ? empty_state(p, q.device()) : none_tensor(q);
  bind_tensors(&p, q, k, v, o);
  p.initial_state = state_ptr(initial_state, "initial_state", p, q.device());
  p.doc_initial_states = piece_states(doc_initial_states, "doc_initial_states", p, q.device());
  p.doc_final_states = output_doc_final_states ? finals.data_ptr<float>() : nullptr;
  p.final_state = output_final_state ? final_state.data_ptr<float>() : nullptr;
  kernels::forward(p);
  return {o, finals, final_state};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_docs_impl(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& d_o,
    const Optional<at::Tensor>& decay, double scale, const at::Tensor& offsets, bool continues,
    bool ends, const Optional<at::Tensor>& initial_state,
    const Optional<at::Tensor>& doc_initial_states, const Optional<at::Tensor>& d_doc_final_states,
    const Optional<at::Tensor>& d_final_state, bool output_d_doc_initial_states,
    bool output_d_initial_state, int64_t block_size) {
  kernels::BackwardParams p;
  static_cast<kernels::Problem&>(p) = make_problem(q, "q", &k, v, "v", decay, scale, block_size);
  p.docs = documents_of(offsets, continues, ends);
  check_like(d_o, "d_o", v, "v");
  const c10::DeviceGuard guard(q.device());
  at::Tensor dq = empty_rows_like(q, p.qk_dim);
  at::Tensor dk = empty_rows_like(k, p.qk_dim);
  at::Tensor dv = empty_rows_like(v, p.v_dim);
  at::Tensor d_inits = output_d_doc_initial_states ? zero_pieces(p, q.device()) : none_tensor(q);
  at::Tensor ds_in = output_d_initial_state ? empty_state(p, q.device()) : none_tensor(q);
  bind_tensors(&p, q, k, v, d_o, dq, dk, dv);
  p.initial_state = state_ptr(initial_state, "initial_state", p, q.device());
  p.doc_initial_states = piece_states(doc_initial_states, "doc_initial_states", p, q.device());
  p.d_doc_final_states = piece_states(d_doc_final_states, "d_doc_final_states", p, q.device());
  p.d_final_state = state_ptr(d_final_state, "d_final_state", p, q.device());
  p.d_doc_initial_states = output_d_doc_initial_states ? d_inits.data_ptr<float>() : nullptr;
  p.d_initial_state = output_d_initial_state ? ds_in.data_ptr<float>() : nullptr;
  kernels::backward(p);
  return {dq, dk, dv, d_inits, ds_in};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_docs(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const Optional<at::Tensor>& decay, double scale, const at::Tensor& offsets, bool continues,
    bool ends, const Optional<at::Tensor>& initial_state,
    const Optional<at::Tensor>& doc_initial_states, bool output_doc_final_states,
    bool output_final_state, int64_t block_size) {
  return torch_errors([&] {
    return forward_docs_impl(q, k, v, decay, scale, offsets, continues, ends, initial_state,
                             doc_initial_states, output_doc_final_states, output_final_state,
                             block_size);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_docs(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& d_o,
    const Optional<at::Tensor>& decay, double scale, const at::Tensor& offsets, bool continues,
    bool ends, const Optional<at::Tensor>& initial_state,
    const Optional<at::Tensor>& doc_initial_states, const Optional<at::Tensor>& d_doc_final_states,
    const Optional<at::Tensor>& d_final_state, bool output_d_doc_initial_states,
    bool output_d_initial_state, int64_t block_size) {
  return torch_errors([&] {
    return backward_docs_impl(q, k, v, d_o, decay, scale, offsets, continues, ends, initial_state,
                              doc_initial_states, d_doc_final_states, d_final_state,
                              output_d_doc_initial_states, output_d_initial_state, block_size);
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lightring, m) {
  m.def(
      "forward_docs(Tensor q, Tensor k, Tensor v, Tensor? decay, float scale, Tensor offsets, "
      "bool continues, bool ends, Tensor? initial_state, Tensor? doc_initial_states, "
      "bool output_doc_final_states, bool output_final_state, int block_size) -> "
      "(Tensor, Tensor, Tensor)");
  m.def(
      "backward_docs(Tensor q, Tensor k, Tensor v, Tensor d_o, Tensor? decay, float scale, "
      "Tensor offsets, bool continues, bool ends, Tensor? initial_state, "
      "Tensor? doc_initial_states, Tensor? d_doc_final_states, Tensor? d_final_state, "
      "bool output_d_doc_initial_states, bool output_d_initial_state, int block_size) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(lightring, CPU, m) {
  m.impl("forward_docs", &forward_docs);
  m.impl("backward_docs", &backward_docs);
}

TORCH_LIBRARY_IMPL(lightring, CUDA, m) {
  m.impl("forward_docs", &forward_docs);
  m.impl("backward_docs", &backward_docs);
}

}  // namespace lightring::csrc
