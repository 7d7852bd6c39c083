// The recurrent form of csrc/model/generate.h.
#include "csrc/model/generate.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace lightring::model {

DecodeState initial_decode_state(TransNormerLM& model, int64_t batch) {
  const ModelConfig& c = model->config();
  const int64_t dh = c.resolved_head_dim();
  DecodeState s;
  for (int64_t l = 0; l < c.num_layers; ++l)
    s.states.push_back(torch::zeros({batch, c.num_heads, dh, dh}, torch::kFloat));
  return s;
}

torch::Tensor decode_step(TransNormerLM& model, const torch::Tensor& ids, DecodeState& state) {
  const ModelConfig& c = model->config();
  LR_CHECK(ids.dim() == 1 && ids.scalar_type() == torch::kLong,
           "decode_step: ids must be [B] int64 (got ", ids.dim(), "-D ", ids.scalar_type(), ")");
  LR_CHECK(state.states.size() == static_cast<size_t>(c.num_layers) &&
               state.states[0].size(0) == ids.size(0),
           "decode_step: the state is not one of this model for ", ids.size(0), " rows");
  torch::NoGradGuard no_grad;
  const int64_t b = ids.size(0), h = c.num_heads, dh = c.resolved_head_dim();
  torch::Tensor x = model->embed(ids);  // [B, d]
  if (c.scale_embedding) x = x * std::sqrt(static_cast<double>(c.d_model));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    TokenMixer& tm = model->layers[l]->token_mixer;
    const std::vector<torch::Tensor> parts =
        tm->qkvu_proj(srms_norm(x, c.norm_eps)).split(h * dh, -1);
    const torch::Tensor q = torch::silu(parts[0]).view({b, h, 1, dh}).to(torch::kFloat);
    const torch::Tensor k = torch::silu(parts[1]).view({b, h, dh, 1}).to(torch::kFloat);
    const torch::Tensor v = parts[2].reshape({b, h, 1, dh}).to(torch::kFloat);
    const torch::Tensor lambda = torch::exp(-tm->decay).view({1, h, 1, 1});
    torch::Tensor& s = state.states[l];
    s = lambda * s + k * v;
    const torch::Tensor o = torch::matmul(q, s).view({b, h * dh}).to(x.scalar_type());
    x = x + tm->out_proj(parts[3] * srms_norm(o, c.norm_eps));
    x = x + model->layers[l]->channel_mixer(srms_norm(x, c.norm_eps));
  }
  return model->lm_head(srms_norm(x, c.norm_eps));
}

std::vector<int64_t> generate(TransNormerLM& model, const std::vector<int64_t>& prompt,
                              const SamplingOptions& o) {
  LR_CHECK(!prompt.empty(), "generate: the prompt needs at least one token");
  LR_CHECK(o.num_tokens >= 0 && o.temperature >= 0 && o.top_k >= 0,
           "generate: num_tokens, temperature and top_k must be >= 0");
  const int64_t vocab = model->config().vocab_size;
  for (const int64_t t : prompt)
    LR_CHECK(t >= 0 && t < vocab, "generate: prompt token ", t, " is outside the vocabulary (",
             vocab, ")");
  torch::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  DecodeState state = initial_decode_state(model, 1);
  torch::Tensor logits;
  for (const int64_t t : prompt)
    logits = decode_step(model, torch::tensor({t}, torch::kLong), state);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < o.num_tokens; ++i) {
    torch::Tensor scores = logits[0].to(torch::kFloat);
    int64_t next;
    if (o.temperature == 0) {
      next = scores.argmax().item<int64_t>();
    } else {
      scores = scores / o.temperature;
      if (o.top_k > 0 && o.top_k < vocab) {
        const torch::Tensor kth = std::get<0>(scores.topk(o.top_k)).min();
        scores = scores.masked_fill(scores < kth, -std::numeric_limits<float>::infinity());
      }
      next = at::multinomial(torch::softmax(scores, -1), 1, false, gen).item<int64_t>();
    }
    out.push_back(next);
    logits = decode_step(model, torch::tensor({next}, torch::kLong), state);
  }
  return out;
}

}  // namespace lightring::model
