// The autograd Function of csrc/model/attention_function.h. Tensors become kernels/ params
// through the torch boundary of csrc/params.h (checks, strides, output allocation). It is the
// one autograd of the attention: the C++ model calls it, and so does the Python op through the
// Autograd kernel of lightring::attention (csrc/attention_op.cpp).
#include "csrc/model/attention_function.h"

#include <c10/core/DeviceGuard.h>
#include <torch/csrc/autograd/functions/basic_ops.h>

#include <cstdint>
#include <memory>

#include "csrc/params.h"

namespace lightring::model {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool is_sharded(const AttentionGroup* g) {
  return g != nullptr && g->sp != nullptr && g->sp->size() > 1;
}

// The document pieces of this shard (B = 1), or a default Documents (one sequence per row).
// Every document starts from a zero state and no document final state is kept: the model
// never carries a state across calls.
kernels::Documents documents_of(const AttentionGroup* g) {
  return g != nullptr && g->documents != nullptr ? g->documents->view() : kernels::Documents{};
}

csrc::Optional<at::Tensor> optional(const torch::Tensor& t) {
  if (!t.defined()) return {};
  return t;
}

// t as a [B, H, N, dim] view the kernels accept: a contiguous last dim and rows that do not
// overlap; copies only when it must (e.g. the expanded gradient of a sum).
torch::Tensor rows(const torch::Tensor& t) {
  const bool bad = (t.size(3) > 1 && t.stride(3) != 1) ||
                   (t.size(2) > 1 && t.stride(2) < t.size(3)) ||
                   (t.size(1) > 1 && t.stride(1) == 0) || (t.size(0) > 1 && t.stride(0) == 0);
  return bad ? t.contiguous() : t;
}

torch::Tensor contiguous_or_undefined(const torch::Tensor& t) {
  return t.defined() ? t.contiguous() : t;
}

// With create_graph=True the gradients computed here would be constants to autograd, so a
// second derivative through them would silently miss the attention's term: each gets a node
// that raises when it is differentiated (first-order uses of create_graph keep working).
variable_list first_order_only(variable_list grads) {
  if (!torch::GradMode::is_enabled()) return grads;
  variable_list aliases;
  std::vector<size_t> where;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) continue;
    aliases.push_back(grads[i].detach().requires_grad_(true));
    where.push_back(i);
  }
  auto error = std::make_shared<torch::autograd::DelayedError>(
      "lightring: a second derivative through lightning_attention was requested "
      "(create_graph=True, then a backward through the gradients it returned); lightring "
      "computes first-order gradients only",
      static_cast<int>(aliases.size()));
  const variable_list wrapped = (*error)(std::move(aliases));
  for (size_t j = 0; j < where.size(); ++j) grads[where[j]] = wrapped[j];
  return grads;
}

// Inputs: q, k, v, decay, initial_state (tensors: gradients for q, k, v, initial_state),
// then scale, output_final_state, block_size, group (constants). decay and initial_state are
// optionals: an absent one is no autograd input at all (libtorch's Function records a
// VariableInfo of every tensor input, which an undefined tensor does not have), so the edge of
// initial_state is number 3 or 4 depending on decay.
class LightningAttentionFunction : public torch::autograd::Function<LightningAttentionFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v,
                               const csrc::Optional<torch::Tensor>& decay_in,
                               const csrc::Optional<torch::Tensor>& initial_in, double scale,
                               bool output_final_state, int64_t block_size,
                               const AttentionGroup* group) {
    const torch::Tensor decay = decay_in.has_value() ? *decay_in : torch::Tensor();
    const torch::Tensor initial_state = initial_in.has_value() ? *initial_in : torch::Tensor();
    kernels::ForwardParams p;
    static_cast<kernels::Problem&>(p) =
        csrc::make_problem(q, "q", &k, v, "v", optional(decay), scale, block_size);
    p.docs = documents_of(group);
    const c10::DeviceGuard guard(q.device());
    torch::Tensor o = csrc::empty_rows_like(v, p.v_dim);
    torch::Tensor final_state =
        output_final_state ? csrc::empty_state(p, q.device()) : csrc::none_tensor(q);
    csrc::bind_tensors(&p, q, k, v, o);
    // The state entering this shard: S_in from the earlier shards, else the given one (or 0).
    torch::Tensor s_in = contiguous_or_undefined(initial_state);
    if (is_sharded(group)) {
      LR_CHECK(!initial_state.defined() && !output_final_state,
               "lightning_attention: initial_state and output_final_state apply to one rank only "
               "here (the model's sharded calls take neither)");
      s_in = csrc::empty_state(p, q.device());
      parallel::forward(*group->sp, p, s_in.data_ptr<float>(), group->options);
    } else {
      p.initial_state = csrc::state_ptr(optional(s_in), "initial_state", p, q.device());
      p.final_state = output_final_state ? final_state.data_ptr<float>() : nullptr;
      kernels::forward(p);
    }
    ctx->save_for_backward({q, k, v, decay, s_in});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["output_final_state"] = output_final_state;
    ctx->saved_data["block_size"] = block_size;
    // The pointer of the caller's group, which outlives the graph (header: ownership).
    ctx->saved_data["group"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(group));
    if (!output_final_state) ctx->mark_non_differentiable({final_state});
    return {o, final_state};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &decay = saved[3];
    const torch::Tensor& s_in = saved[4];
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool output_final_state = ctx->saved_data["output_final_state"].toBool();
    const int64_t block_size = ctx->saved_data["block_size"].toInt();
    const auto* group = reinterpret_cast<const AttentionGroup*>(
        static_cast<intptr_t>(ctx->saved_data["group"].toInt()));
    const bool sharded = is_sharded(group);
    const bool want_ds0 =
        !sharded && s_in.defined() && ctx->needs_input_grad(decay.defined() ? 4 : 3);
    const torch::Tensor d_o = grads[0].defined() ? rows(grads[0]) : torch::zeros_like(v);
    const torch::Tensor d_final =
        output_final_state && grads[1].defined() ? grads[1].contiguous() : torch::Tensor();
    kernels::BackwardParams p;
    static_cast<kernels::Problem&>(p) =
        csrc::make_problem(q, "q", &k, v, "v", optional(decay), scale, block_size);
    p.docs = documents_of(group);
    csrc::check_like(d_o, "d_o", v, "v");
    const c10::DeviceGuard guard(q.device());
    torch::Tensor dq = csrc::empty_rows_like(q, p.qk_dim);
    torch::Tensor dk = csrc::empty_rows_like(k, p.qk_dim);
    torch::Tensor dv = csrc::empty_rows_like(v, p.v_dim);
    torch::Tensor ds0 = want_ds0 ? csrc::empty_state(p, q.device()) : torch::Tensor();
    csrc::bind_tensors(&p, q, k, v, d_o, dq, dk, dv);
    p.initial_state = csrc::state_ptr(optional(s_in), "initial_state", p, q.device());
    if (sharded) {
      parallel::backward(*group->sp, p, group->options);
    } else {
      p.d_final_state = csrc::state_ptr(optional(d_final), "d_final_state", p, q.device());
      p.d_initial_state = want_ds0 ? ds0.data_ptr<float>() : nullptr;
      kernels::backward(p);
    }
    return first_order_only({dq, dk, dv, torch::Tensor(), ds0, torch::Tensor(), torch::Tensor(),
                             torch::Tensor(), torch::Tensor()});
  }
};

}  // namespace

std::vector<torch::Tensor> lightning_attention_states(
    const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
    const torch::Tensor& decay, const torch::Tensor& initial_state, double scale,
    bool output_final_state, int64_t block_size, const AttentionGroup* group) {
  LR_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
           "lightning_attention: q, k, v must be 4-D (got ", q.dim(), "-D, ", k.dim(), "-D, ",
           v.dim(), "-D)");
  LR_CHECK(!decay.defined() || !decay.requires_grad() || !torch::GradMode::is_enabled(),
           "lightning_attention: decay is a constant; pass decay.detach()");
  return LightningAttentionFunction::apply(q, k, v, optional(decay), optional(initial_state), scale,
                                           output_final_state, block_size, group);
}

torch::Tensor lightning_attention(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v, const torch::Tensor& decay, double scale,
                                  const AttentionGroup& group) {
  LR_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
           "lightning_attention: q, k, v must be [B, N, H, dim] (got ", q.dim(), "-D, ", k.dim(),
           "-D, ", v.dim(), "-D)");
  // [B, N, H, dim] -> the [B, H, N, dim] views the kernels read (no copy), and back.
  return lightning_attention_states(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), decay,
                                    torch::Tensor(), scale, false, group.block_size, &group)[0]
      .transpose(1, 2);
}

}  // namespace lightring::model
