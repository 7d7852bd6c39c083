// The size of a TransNormerLLM model (csrc/model/transnormer.h): presets and their parameter count.
//
// Parameters (all weights, no biases, no norm weights: every norm is SRMSNorm):
//   embedding   V·d
//   per layer   token mixer  qkvu d·4·H·dh + out_proj H·dh·d
//               channel mixer W1, W2 d·f + W3 f·d            (SGLU, f = ffn_dim)
//   LM head     d·V                                          (not tied to the embedding)
//   total       2·V·d + L·(5·H·dh·d + 3·d·f)
#pragma once

#include <cstdint>
#include <string>

namespace lightring::model {

struct ModelConfig {
  std::string preset = "tiny";  // the preset the sizes came from ("custom" after an override)
  int64_t vocab_size = 0;       // V: set from the data (or a flag)
  int64_t d_model = 0;          // d
  int64_t num_layers = 0;       // L
  int64_t num_heads = 0;        // H
  int64_t head_dim = 0;         // dh: 0 means d / H
  int64_t ffn_dim = 0;          // f, the SGLU hidden size: 0 means round_up(8·d/3, 64)
  bool scale_embedding = true;  // embeddings times √d
  double norm_eps = 1e-6;       // SRMSNorm: x / sqrt(mean(x²) + eps)
  double init_std = 0.02;       // every weight ~ normal(0, init_std)

  // dh and f with their defaults resolved.
  int64_t resolved_head_dim() const;
  int64_t resolved_ffn_dim() const;
};

// "tiny" (CPU, CI: d 64, L 2, H 4, f 128), "125m" (d 768, L 12, H 12), "350m" (d 1024, L 24,
// H 16), "1b" (d 2048, L 24, H 16). Throws lightring::Error naming the known presets otherwise.
ModelConfig preset_config(const std::string& name);
const char* known_presets();

// Throws lightring::Error naming the field when a size is out of range (dh must be 1..256,
// the kernels' limit; V >= 2).
void validate(const ModelConfig& config);

// The parameter count of the formula above.
int64_t parameter_count(const ModelConfig& config);
// The count without the embedding and the LM head (the part that scales the FLOPs per token).
int64_t non_embedding_parameter_count(const ModelConfig& config);

// One line for logs and checkpoints: "preset=tiny V=257 d=64 L=2 H=4 dh=16 f=128 scale_emb=1".
std::string describe(const ModelConfig& config);

}  // namespace lightring::model
