// The registered ops lightring::forward / backward / local_state: check the
// tensors (csrc/params.h), fill a kernels/ params struct, call the kernel on
// torch's current stream. They have no autograd of their own: the Python
// Functions over them (lightring/functional.py under torch.compile, documents.py,
// sequence_parallel.py) hold it; eager local calls use lightring::attention
// (attention_op.cpp), the C++ autograd Function. Fake (meta) implementations for
// torch.compile are in lightring/_ops.py.
//
// An output that was not requested is returned as an empty [0] tensor, so that
// every op has a fixed number of tensor outputs.
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "csrc/params.h"

namespace lightring::csrc {

namespace {

// o = c·q S (docs/algorithm.md §1) for every row; optionally the final state.
std::tuple<at::Tensor, at::Tensor> forward_impl(const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v,
                                                const Optional<at::Tensor>& decay, double scale,
                                                const Optional<at::Tensor>& initial_state,
                                                bool output_final_state, int64_t block_size) {
  kernels::ForwardParams p;
  static_cast<kernels::Problem&>(p) = make_problem(q, "q", &k, v, "v", decay, scale, block_size);
  const c10::DeviceGuard guard(q.device());
  at::Tensor o = empty_rows_like(v, p.v_dim);
  at::Tensor final_state = output_final_state ? empty_state(p, q.device()) : none_tensor(q);
  bind_tensors(&p, q, k, v, o);
  p.initial_state = state_ptr(initial_state, "initial_state", p, q.device());
  p.final_state = output_final_state ? final_state.data_ptr<float>() : nullptr;
  kernels::forward(p);
  return {o, final_state};
}

// dq, dk, dv and (when asked) dS0, given dO and the final-state gradient G.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_impl(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& d_o,
    const Optional<at::Tensor>& decay, double scale, const Optional<at::Tensor>& initial_state,
    const Optional<at::Tensor>& d_final_state, bool output_d_initial_state, int64_t block_size) {
  kernels::BackwardParams p;
  static_cast<kernels::Problem&>(p) = make_problem(q, "q", &k, v, "v", decay, scale, block_size);
  check_like(d_o, "d_o", v, "v");
  const c10::DeviceGuard guard(q.device());
  at::Tensor dq = empty_rows_like(q, p.qk_dim);
  at::Tensor dk = empty_rows_like(k, p.qk_dim);
  at::Tensor dv = empty_rows_like(v, p.v_dim);
  at::Tensor ds0 = output_d_initial_state ? empty_state(p, q.device()) : none_tensor(q);
  bind_tensors(&p, q, k, v, d_o, dq, dk, dv);
  p.initial_state = state_ptr(initial_state, "initial_state", p, q.device());
  p.d_final_state = state_ptr(d_final_state, "d_final_state", p, q.device());
  p.d_initial_state = output_d_initial_state ? ds0.data_ptr<float>() : nullptr;
  kernels::backward(p);
  return {dq, dk, dv, ds0};
}

// The local state of a segment from a zero state (§3): A = Σ λ^{N-1-t} k_tᵀ v_t
// (x = k, y = v), or with backward=True C = Σ c·λ^{t+1} q_tᵀ dO_t (x = q, y = dO).
at::Tensor local_state_impl(const at::Tensor& x, const at::Tensor& y,
                            const Optional<at::Tensor>& decay, double scale, bool backward,
                            int64_t block_size) {
  kernels::StateParams p;
  const char* x_name = backward ? "q" : "k";
  const char* y_name = backward ? "d_o" : "v";
  static_cast<kernels::Problem&>(p) =
      make_problem(x, x_name, nullptr, y, y_name, decay, scale, block_size);
  const c10::DeviceGuard guard(x.device());
  at::Tensor state = empty_state(p, x.device());
  p.kind = backward ? kernels::StateKind::kBackward : kernels::StateKind::kForward;
  p.x = x.data_ptr();
  p.y = y.data_ptr();
  p.x_stride = strides_of(x);
  p.y_stride = strides_of(y);
  p.state = state.data_ptr<float>();
  kernels::local_state(p);
  return state;
}

std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, const Optional<at::Tensor>& decay,
                                           double scale, const Optional<at::Tensor>& initial_state,
                                           bool output_final_state, int64_t block_size) {
  return torch_errors([&] {
    return forward_impl(q, k, v, decay, scale, initial_state, output_final_state, block_size);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& d_o,
    const Optional<at::Tensor>& decay, double scale, const Optional<at::Tensor>& initial_state,
    const Optional<at::Tensor>& d_final_state, bool output_d_initial_state, int64_t block_size) {
  return torch_errors([&] {
    return backward_impl(q, k, v, d_o, decay, scale, initial_state, d_final_state,
                         output_d_initial_state, block_size);
  });
}

at::Tensor local_state(const at::Tensor& x, const at::Tensor& y, const Optional<at::Tensor>& decay,
                       double scale, bool backward, int64_t block_size) {
  return torch_errors([&] { return local_state_impl(x, y, decay, scale, backward, block_size); });
}

}  // namespace

TORCH_LIBRARY(lightring, m) {
  m.def(
      "forward(Tensor q, Tensor k, Tensor v, Tensor? decay, float scale, Tensor? initial_state, "
      "bool output_final_state, int block_size) -> (Tensor, Tensor)");
  m.def(
      "backward(Tensor q, Tensor k, Tensor v, Tensor d_o, Tensor? decay, float scale, "
      "Tensor? initial_state, Tensor? d_final_state, bool output_d_initial_state, "
      "int block_size) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "local_state(Tensor x, Tensor y, Tensor? decay, float scale, bool backward, "
      "int block_size) -> Tensor");
}

TORCH_LIBRARY_IMPL(lightring, CPU, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
  m.impl("local_state", &local_state);
}

TORCH_LIBRARY_IMPL(lightring, CUDA, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
  m.impl("local_state", &local_state);
}

}  // namespace lightring::csrc
