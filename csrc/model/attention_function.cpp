// The autograd Function of csrc/model/attention_function.h. Tensors become kernels/ params
// through the torch boundary of csrc/params.h (checks, strides, output allocation).
#include "csrc/model/attention_function.h"

#include <cstdint>

#include "csrc/params.h"

namespace lightring::model {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool is_sharded(const AttentionGroup& g) {
  return g.sp != nullptr && g.sp->size() > 1;
}

// The document pieces of this shard (B = 1), or a default Documents (one sequence per row).
// Every document starts from a zero state and no document final state is kept: the model
// never carries a state across calls.
kernels::Documents documents_of(const AttentionGroup& g) {
  return g.documents != nullptr ? g.documents->view() : kernels::Documents{};
}

// [B, N, H, dim] -> the [B, H, N, dim] view the kernels read (no copy).
torch::Tensor bhnd(const torch::Tensor& t) {
  return t.transpose(1, 2);
}

class LightningAttentionFunction : public torch::autograd::Function<LightningAttentionFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& decay, double scale,
                               const AttentionGroup* group) {
    const torch::Tensor qt = bhnd(q), kt = bhnd(k), vt = bhnd(v);
    kernels::ForwardParams p;
    static_cast<kernels::Problem&>(p) =
        csrc::make_problem(qt, "q", &kt, vt, "v", decay, scale, group->block_size);
    p.docs = documents_of(*group);
    torch::Tensor o = csrc::empty_rows_like(vt, p.v_dim);
    csrc::bind_tensors(&p, qt, kt, vt, o);
    torch::Tensor s_in;  // undefined on one rank: the entering state is zero
    if (is_sharded(*group)) {
      s_in = csrc::empty_state(p, q.device());
      parallel::forward(*group->sp, p, s_in.data_ptr<float>(), group->options);
    } else {
      kernels::forward(p);
    }
    ctx->save_for_backward({q, k, v, decay, s_in});
    ctx->saved_data["scale"] = scale;
    // The pointer of the caller's group, which outlives the graph (header: ownership).
    ctx->saved_data["group"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(group));
    return {o.transpose(1, 2)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor qt = bhnd(saved[0]), kt = bhnd(saved[1]), vt = bhnd(saved[2]);
    const torch::Tensor& decay = saved[3];
    const torch::Tensor& s_in = saved[4];
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto* group = reinterpret_cast<const AttentionGroup*>(
        static_cast<intptr_t>(ctx->saved_data["group"].toInt()));
    torch::Tensor d_o = bhnd(grads[0]);
    if (d_o.stride(3) != 1) d_o = d_o.contiguous();
    kernels::BackwardParams p;
    static_cast<kernels::Problem&>(p) =
        csrc::make_problem(qt, "q", &kt, vt, "v", decay, scale, group->block_size);
    p.docs = documents_of(*group);
    csrc::check_like(d_o, "d_o", vt, "v");
    torch::Tensor dq = csrc::empty_rows_like(qt, p.qk_dim);
    torch::Tensor dk = csrc::empty_rows_like(kt, p.qk_dim);
    torch::Tensor dv = csrc::empty_rows_like(vt, p.v_dim);
    csrc::bind_tensors(&p, qt, kt, vt, d_o, dq, dk, dv);
    if (is_sharded(*group)) {
      p.initial_state = s_in.data_ptr<float>();
      parallel::backward(*group->sp, p, group->options);
    } else {
      kernels::backward(p);
    }
    return {dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2),
            torch::Tensor(),    torch::Tensor(),    torch::Tensor()};
  }
};

}  // namespace

torch::Tensor lightning_attention(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v, const torch::Tensor& decay, double scale,
                                  const AttentionGroup& group) {
  LR_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
           "lightning_attention: q, k, v must be [B, N, H, dim] (got ", q.dim(), "-D, ", k.dim(),
           "-D, ", v.dim(), "-D)");
  LR_CHECK(!decay.defined() || !decay.requires_grad(),
           "lightning_attention: decay is a constant; pass decay.detach()");
  return LightningAttentionFunction::apply(q, k, v, decay, scale, &group)[0];
}

}  // namespace lightring::model
