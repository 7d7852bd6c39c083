// TransNormerLLM (Qin et al. 2023) in libtorch, on lightring attention.
//
// With x [B, N, d] (this rank's shard of the sequence), SRMSNorm(x) = x / sqrt(mean_d(x²) + eps)
// (no weight, computed in fp32), L layers l = 0 … L-1, H heads of dh:
//
//   h_0   = Embed(ids) · (√d when scale_embedding)
//   h'    = h_l + TokenMixer_l(SRMSNorm(h_l))
//   h_l+1 = h' + ChannelMixer_l(SRMSNorm(h'))
//   logits = LMHead(SRMSNorm(h_L))                                          [B, N, V]
//
//   TokenMixer_l(x):  [q k v u] = x·W_qkvu (d -> 4·H·dh, no bias); q, k = SiLU(q), SiLU(k)
//                     o = lightning attention(q, k, v), scale 1, per-head rate
//                         s_h·(1 − l/(L−1) + 1e-5) (s_h = kernels::slopes(H); s_h when L = 1)
//                     out = W_out(u ⊙ SRMSNorm(o)), the norm over all H·dh channels of a token;
//                     the gate u has no activation
//   ChannelMixer(x):  SGLU, W3(W1 x ⊙ W2 x), no activation
//
// The token mixer is the function of lightring.nn.LightningAttention(d, H, gate=True, norm=True,
// activation="silu", decay="slopes", layer_idx=l, num_layers=L) with the same parameter names
// (qkvu_proj, out_proj). Every weight is initialised normal(0, init_std). Module names:
//   embed.weight, layers.<l>.token_mixer.{qkvu_proj,out_proj}.weight,
//   layers.<l>.channel_mixer.{w1,w2,w3}.weight, lm_head.weight; buffers
//   layers.<l>.token_mixer.decay
#pragma once

#include <torch/torch.h>

#include "csrc/model/attention_function.h"
#include "csrc/model/config.h"

namespace lightring::model {

// The attention groups of a batch of B rows, as the modules take them: count == 1, one group
// for every row (the rows run as one call), or count == B, row b running alone with groups[b]
// (its own packed documents, AttentionGroup::documents, which need B = 1 per call). The groups
// are the caller's and must outlive the graph (csrc/model/attention_function.h).
struct AttentionRows {
  const AttentionGroup* groups = nullptr;
  size_t count = 0;
};

// x / sqrt(mean(x²) + eps) over the last dim, in fp32, returned in x's dtype.
torch::Tensor srms_norm(const torch::Tensor& x, double eps);

// The per-head rates of layer l of L: s_h·(1 − l/(L−1) + 1e-5), [H] fp32.
torch::Tensor layer_decay(int64_t heads, int64_t layer, int64_t num_layers);

class TokenMixerImpl : public torch::nn::Module {
 public:
  TokenMixerImpl(const ModelConfig& config, int64_t layer);
  // x [B, N, d] -> [B, N, d]
  torch::Tensor forward(const torch::Tensor& x, AttentionRows rows);

  torch::nn::Linear qkvu_proj{nullptr}, out_proj{nullptr};
  torch::Tensor decay;  // [H] fp32 buffer

 private:
  int64_t heads_, head_dim_;
  double eps_;
};
TORCH_MODULE(TokenMixer);

class ChannelMixerImpl : public torch::nn::Module {
 public:
  ChannelMixerImpl(int64_t d_model, int64_t ffn_dim);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear w1{nullptr}, w2{nullptr}, w3{nullptr};
};
TORCH_MODULE(ChannelMixer);

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& config, int64_t layer);
  torch::Tensor forward(const torch::Tensor& x, AttentionRows rows);

  TokenMixer token_mixer{nullptr};
  ChannelMixer channel_mixer{nullptr};

 private:
  double eps_;
};
TORCH_MODULE(Block);

class TransNormerLMImpl : public torch::nn::Module {
 public:
  // Validates the config; initialises the weights from torch's default generator.
  explicit TransNormerLMImpl(const ModelConfig& config);
  // ids [B, N] int64 (this rank's shard) -> logits [B, N, V] fp32, every row with `group`.
  torch::Tensor forward(const torch::Tensor& ids, const AttentionGroup& group);
  // Row b with rows[b] (rows.size() == B): packed documents per row.
  torch::Tensor forward(const torch::Tensor& ids, const std::vector<AttentionGroup>& rows);
  const ModelConfig& config() const { return config_; }

  torch::nn::Embedding embed{nullptr};
  std::vector<Block> layers;
  torch::nn::Linear lm_head{nullptr};

 private:
  torch::Tensor forward_rows(const torch::Tensor& ids, AttentionRows rows);
  ModelConfig config_;
};
TORCH_MODULE(TransNormerLM);

}  // namespace lightring::model
