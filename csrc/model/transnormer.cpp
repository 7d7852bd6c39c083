// The TransNormerLLM modules of csrc/model/transnormer.h.
#include "csrc/model/transnormer.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/attention.h"

namespace lightring::model {

torch::Tensor srms_norm(const torch::Tensor& x, double eps) {
  const torch::Tensor xf = x.to(torch::kFloat);
  return (xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps)).to(x.scalar_type());
}

torch::Tensor layer_decay(int64_t heads, int64_t layer, int64_t num_layers) {
  std::vector<float> s(static_cast<size_t>(heads));
  kernels::slopes(heads, s.data());
  torch::Tensor rate = torch::tensor(s, torch::kFloat);
  // As lightring.nn.LightningAttention: the layer factor only when there are several layers.
  if (num_layers > 1) {
    rate = rate * (1.0 - static_cast<double>(layer) / static_cast<double>(num_layers - 1) + 1e-5);
  }
  return rate;
}

TokenMixerImpl::TokenMixerImpl(const ModelConfig& c, int64_t layer)
    : heads_(c.num_heads), head_dim_(c.resolved_head_dim()), eps_(c.norm_eps) {
  const int64_t hidden = heads_ * head_dim_;
  qkvu_proj = register_module(
      "qkvu_proj", torch::nn::Linear(torch::nn::LinearOptions(c.d_model, 4 * hidden).bias(false)));
  out_proj = register_module(
      "out_proj", torch::nn::Linear(torch::nn::LinearOptions(hidden, c.d_model).bias(false)));
  decay = register_buffer("decay", layer_decay(heads_, layer, c.num_layers));
}

torch::Tensor TokenMixerImpl::forward(const torch::Tensor& x, AttentionRows rows) {
  const int64_t b = x.size(0), n = x.size(1), hidden = heads_ * head_dim_;
  const std::vector<torch::Tensor> parts = qkvu_proj(x).split(hidden, -1);
  const torch::Tensor q = torch::silu(parts[0]).view({b, n, heads_, head_dim_});
  const torch::Tensor k = torch::silu(parts[1]).view({b, n, heads_, head_dim_});
  const torch::Tensor v = parts[2].view({b, n, heads_, head_dim_});
  torch::Tensor o;
  if (rows.count == 1) {
    o = lightning_attention(q, k, v, decay, 1.0, rows.groups[0]);
  } else {
    std::vector<torch::Tensor> out;
    for (int64_t r = 0; r < b; ++r) {
      out.push_back(lightning_attention(q.narrow(0, r, 1), k.narrow(0, r, 1), v.narrow(0, r, 1),
                                        decay, 1.0, rows.groups[r]));
    }
    o = torch::cat(out, 0);
  }
  o = o.reshape({b, n, hidden});
  return out_proj(parts[3] * srms_norm(o, eps_));
}

ChannelMixerImpl::ChannelMixerImpl(int64_t d_model, int64_t ffn_dim) {
  w1 = register_module("w1",
                       torch::nn::Linear(torch::nn::LinearOptions(d_model, ffn_dim).bias(false)));
  w2 = register_module("w2",
                       torch::nn::Linear(torch::nn::LinearOptions(d_model, ffn_dim).bias(false)));
  w3 = register_module("w3",
                       torch::nn::Linear(torch::nn::LinearOptions(ffn_dim, d_model).bias(false)));
}

torch::Tensor ChannelMixerImpl::forward(const torch::Tensor& x) {
  return w3(w1(x) * w2(x));
}

BlockImpl::BlockImpl(const ModelConfig& c, int64_t layer) : eps_(c.norm_eps) {
  token_mixer = register_module("token_mixer", TokenMixer(c, layer));
  channel_mixer = register_module("channel_mixer", ChannelMixer(c.d_model, c.resolved_ffn_dim()));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, AttentionRows rows) {
  const torch::Tensor h = x + token_mixer(srms_norm(x, eps_), rows);
  return h + channel_mixer(srms_norm(h, eps_));
}

TransNormerLMImpl::TransNormerLMImpl(const ModelConfig& c) : config_(c) {
  validate(c);
  embed = register_module("embed", torch::nn::Embedding(c.vocab_size, c.d_model));
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < c.num_layers; ++l) {
    layers.push_back(Block(c, l));
    list->push_back(layers.back());
  }
  lm_head = register_module(
      "lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.d_model, c.vocab_size).bias(false)));
  // normal(0, init_std) for every weight, in named_parameters() order (deterministic per seed).
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) p.value().normal_(0.0, c.init_std);
}

torch::Tensor TransNormerLMImpl::forward(const torch::Tensor& ids, const AttentionGroup& group) {
  return forward_rows(ids, AttentionRows{&group, 1});
}

torch::Tensor TransNormerLMImpl::forward(const torch::Tensor& ids,
                                         const std::vector<AttentionGroup>& rows) {
  LR_CHECK(ids.dim() == 2 && static_cast<int64_t>(rows.size()) == ids.size(0),
           "TransNormerLM: one attention group per row: ", rows.size(), " groups for ",
           ids.dim() == 2 ? ids.size(0) : -1, " rows");
  return forward_rows(ids, AttentionRows{rows.data(), rows.size()});
}

torch::Tensor TransNormerLMImpl::forward_rows(const torch::Tensor& ids, AttentionRows rows) {
  LR_CHECK(ids.dim() == 2 && ids.scalar_type() == torch::kLong,
           "TransNormerLM: ids must be [B, N] int64 (got ", ids.dim(), "-D ", ids.scalar_type(),
           ")");
  torch::Tensor h = embed(ids);
  if (config_.scale_embedding) h = h * std::sqrt(static_cast<double>(config_.d_model));
  for (Block& block : layers) h = block(h, rows);
  return lm_head(srms_norm(h, config_.norm_eps));
}

}  // namespace lightring::model
