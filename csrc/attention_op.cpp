// The registered op lightring::attention: the autograd of the attention in C++, shared with
// the C++ model. Its Autograd kernel applies the libtorch autograd Function of
// csrc/model/attention_function.h, so the Python op's autograd node, the math of its backward
// and the tensors it saves are those of lightring-train's model (python/lightring/functional.py
// calls this op for the local path in eager mode; docs/training.md, "One autograd Function").
//
// The CPU and CUDA kernels are the same function: they are reached only when autograd is
// excluded (torch.inference_mode), where the Function runs its forward without a graph.
//
//   attention(q, k, v, decay?, scale, initial_state?, output_final_state, block_size)
//     -> (o, final_state)        q, k [B, H, N, D], v [B, H, N, E] views; final_state a [0]
//                                tensor (not differentiable) when output_final_state is false
#include <torch/library.h>

#include "csrc/model/attention_function.h"
#include "csrc/params.h"

namespace lightring::csrc {

namespace {

std::tuple<at::Tensor, at::Tensor> attention(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const Optional<at::Tensor>& decay,
                                             double scale,
                                             const Optional<at::Tensor>& initial_state,
                                             bool output_final_state, int64_t block_size) {
  return torch_errors([&] {
    const std::vector<at::Tensor> out =
        model::lightning_attention_states(q, k, v, decay.has_value() ? *decay : at::Tensor(),
                                          initial_state.has_value() ? *initial_state : at::Tensor(),
                                          scale, output_final_state, block_size, /*group=*/nullptr);
    return std::make_tuple(out[0], out[1]);
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lightring, m) {
  m.def(
      "attention(Tensor q, Tensor k, Tensor v, Tensor? decay, float scale, "
      "Tensor? initial_state, bool output_final_state, int block_size) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(lightring, Autograd, m) {
  m.impl("attention", &attention);
}

TORCH_LIBRARY_IMPL(lightring, CPU, m) {
  m.impl("attention", &attention);
}

TORCH_LIBRARY_IMPL(lightring, CUDA, m) {
  m.impl("attention", &attention);
}

}  // namespace lightring::csrc
