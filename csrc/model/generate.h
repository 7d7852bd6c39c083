// Generation with the recurrent form of TransNormerLM (csrc/model/transnormer.h): one state
// update per token per layer, no recomputation of the prefix.
//
// Per layer l and head h the decoding state is S [dh, dh] fp32 (one [B, H, dh, dh] tensor per
// layer). A token's step is the model's forward at one position:
//   [q k v u] = SRMSNorm(x)·W_qkvu;  q, k = SiLU(q), SiLU(k)
//   S = λ_h·S + kᵀ v;   o = q·S                      (λ_h = exp(-rate_h) of the layer)
//   x += W_out(u ⊙ SRMSNorm(o));  x += W3(W1 m ⊙ W2 m), m = SRMSNorm(x)
// so feeding a sequence token by token gives the logits of TransNormerLM::forward at every
// position (tests/cpp/model/test_generate.cpp).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "csrc/model/transnormer.h"

namespace lightring::model {

struct DecodeState {
  std::vector<torch::Tensor> states;  // per layer [B, H, dh, dh] fp32
};

// Zero states for `batch` rows.
DecodeState initial_decode_state(TransNormerLM& model, int64_t batch);

// ids [B] int64 (one token per row) -> logits [B, V]; advances `state` by that token.
torch::Tensor decode_step(TransNormerLM& model, const torch::Tensor& ids, DecodeState& state);

struct SamplingOptions {
  int64_t num_tokens = 64;   // tokens to generate after the prompt
  double temperature = 0.8;  // 0: greedy (argmax)
  int64_t top_k = 0;         // sample among the k most likely tokens; 0: all
  uint64_t seed = 0;         // of the sampling generator (torch's default one is untouched)
};

// Feeds `prompt` (>= 1 token) through the recurrent form, then samples num_tokens tokens;
// returns the new tokens only. No gradient is recorded.
std::vector<int64_t> generate(TransNormerLM& model, const std::vector<int64_t>& prompt,
                              const SamplingOptions& options);

}  // namespace lightring::model
