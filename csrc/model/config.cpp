// Presets and parameter counts of csrc/model/config.h.
#include "csrc/model/config.h"

#include <sstream>

#include "core/error.h"

namespace lightring::model {

int64_t ModelConfig::resolved_head_dim() const {
  if (head_dim > 0) return head_dim;
  return num_heads > 0 ? d_model / num_heads : 0;
}

int64_t ModelConfig::resolved_ffn_dim() const {
  if (ffn_dim > 0) return ffn_dim;
  const int64_t f = (8 * d_model + 2) / 3;  // ceil(8d/3)
  return (f + 63) / 64 * 64;
}

const char* known_presets() {
  return "tiny, 125m, 350m, 1b";
}

ModelConfig preset_config(const std::string& name) {
  ModelConfig c;
  c.preset = name;
  if (name == "tiny") {
    c.d_model = 64, c.num_layers = 2, c.num_heads = 4, c.ffn_dim = 128;
  } else if (name == "125m") {
    c.d_model = 768, c.num_layers = 12, c.num_heads = 12;
  } else if (name == "350m") {
    c.d_model = 1024, c.num_layers = 24, c.num_heads = 16;
  } else if (name == "1b") {
    c.d_model = 2048, c.num_layers = 24, c.num_heads = 16;
  } else {
    LR_THROW("--preset: unknown preset '", name, "' (known: ", known_presets(), ")");
  }
  return c;
}

void validate(const ModelConfig& c) {
  LR_CHECK(c.vocab_size >= 2, "--vocab: the vocabulary must hold at least 2 ids (got ",
           c.vocab_size, ")");
  LR_CHECK(c.d_model >= 1, "--d-model must be >= 1 (got ", c.d_model, ")");
  LR_CHECK(c.num_layers >= 1, "--layers must be >= 1 (got ", c.num_layers, ")");
  LR_CHECK(c.num_heads >= 1, "--heads must be >= 1 (got ", c.num_heads, ")");
  LR_CHECK(c.head_dim > 0 || c.d_model % c.num_heads == 0, "--d-model (", c.d_model,
           ") must be divisible by --heads (", c.num_heads, "), or set --head-dim");
  const int64_t dh = c.resolved_head_dim();
  LR_CHECK(dh >= 1 && dh <= 256, "the head dim must be 1..256, the kernels' limit (got ", dh,
           " = --d-model / --heads or --head-dim)");
  LR_CHECK(c.resolved_ffn_dim() >= 1, "--ffn-dim must be >= 1 (got ", c.ffn_dim, ")");
  LR_CHECK(c.norm_eps > 0, "the norm epsilon must be > 0 (got ", c.norm_eps, ")");
  LR_CHECK(c.init_std > 0, "--init-std must be > 0 (got ", c.init_std, ")");
}

int64_t non_embedding_parameter_count(const ModelConfig& c) {
  const int64_t hd = c.num_heads * c.resolved_head_dim();
  const int64_t f = c.resolved_ffn_dim();
  return c.num_layers * (5 * hd * c.d_model + 3 * c.d_model * f);
}

int64_t parameter_count(const ModelConfig& c) {
  return 2 * c.vocab_size * c.d_model + non_embedding_parameter_count(c);
}

std::string describe(const ModelConfig& c) {
  std::ostringstream os;
  os << "preset=" << c.preset << " V=" << c.vocab_size << " d=" << c.d_model
     << " L=" << c.num_layers << " H=" << c.num_heads << " dh=" << c.resolved_head_dim()
     << " f=" << c.resolved_ffn_dim() << " scale_emb=" << (c.scale_embedding ? 1 : 0);
  return os.str();
}

}  // namespace lightring::model
