// Presets, validation and the parameter count of csrc/model/config.h, against the modules the
// model actually registers.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>
#include <string>

#include "common/expect_error.h"
#include "csrc/model/config.h"
#include "csrc/model/transnormer.h"

namespace lightring::model {
namespace {

int64_t counted(TransNormerLM& model) {
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  return n;
}

TEST(Config, ParameterCountIsWhatTheModelRegisters) {
  struct Sizes {
    int64_t vocab, d, layers, heads, head_dim, ffn;
  };
  for (const Sizes& s : {Sizes{257, 64, 2, 4, 0, 128}, Sizes{53, 24, 3, 3, 8, 40},
                         Sizes{17, 20, 2, 5, 6, 0}, Sizes{300, 96, 1, 6, 0, 0}}) {
    ModelConfig c;
    c.vocab_size = s.vocab, c.d_model = s.d, c.num_layers = s.layers, c.num_heads = s.heads;
    c.head_dim = s.head_dim, c.ffn_dim = s.ffn;
    TransNormerLM model(c);
    EXPECT_EQ(parameter_count(c), counted(model)) << describe(c);
    const int64_t embed_and_head = 2 * s.vocab * s.d;
    EXPECT_EQ(non_embedding_parameter_count(c), counted(model) - embed_and_head) << describe(c);
  }
}

TEST(Config, ParameterNamesAndNoBuffersButDecay) {
  ModelConfig c = preset_config("tiny");
  c.vocab_size = 11;
  TransNormerLM model(c);
  std::set<std::string> names;
  for (const auto& p : model->named_parameters()) names.insert(p.key());
  const std::set<std::string> expected = {"embed.weight",
                                          "layers.0.token_mixer.qkvu_proj.weight",
                                          "layers.0.token_mixer.out_proj.weight",
                                          "layers.0.channel_mixer.w1.weight",
                                          "layers.0.channel_mixer.w2.weight",
                                          "layers.0.channel_mixer.w3.weight",
                                          "layers.1.token_mixer.qkvu_proj.weight",
                                          "layers.1.token_mixer.out_proj.weight",
                                          "layers.1.channel_mixer.w1.weight",
                                          "layers.1.channel_mixer.w2.weight",
                                          "layers.1.channel_mixer.w3.weight",
                                          "lm_head.weight"};
  EXPECT_EQ(names, expected);
  std::set<std::string> buffers;
  for (const auto& b : model->named_buffers()) buffers.insert(b.key());
  EXPECT_EQ(buffers,
            (std::set<std::string>{"layers.0.token_mixer.decay", "layers.1.token_mixer.decay"}));
}

TEST(Config, InitIsNormalWithTheConfiguredStd) {
  ModelConfig c = preset_config("tiny");
  c.vocab_size = 257;
  c.init_std = 0.05;
  torch::manual_seed(1);
  TransNormerLM model(c);
  const torch::Tensor w = model->lm_head->weight;  // 257 x 64
  EXPECT_NEAR(w.std().item<double>(), 0.05, 0.002);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.002);
  // Same seed, same weights.
  torch::manual_seed(1);
  TransNormerLM again(c);
  EXPECT_TRUE(torch::equal(again->lm_head->weight, w));
}

TEST(Config, Presets) {
  struct Expected {
    const char* name;
    int64_t d, layers, heads;
  };
  for (const Expected& e : {Expected{"tiny", 64, 2, 4}, Expected{"125m", 768, 12, 12},
                            Expected{"350m", 1024, 24, 16}, Expected{"1b", 2048, 24, 16}}) {
    const ModelConfig c = preset_config(e.name);
    EXPECT_EQ(c.preset, e.name);
    EXPECT_EQ(c.d_model, e.d) << e.name;
    EXPECT_EQ(c.num_layers, e.layers) << e.name;
    EXPECT_EQ(c.num_heads, e.heads) << e.name;
    EXPECT_EQ(c.resolved_head_dim() * c.num_heads, c.d_model) << e.name;
  }
  // The default SGLU width: 8d/3 rounded up to a multiple of 64.
  EXPECT_EQ(preset_config("125m").resolved_ffn_dim(), 2048);
  EXPECT_EQ(preset_config("1b").resolved_ffn_dim(), 5504);
  // 125m with GPT-2's padded vocabulary: 2·50304·768 + 12·(5·768² + 3·768·2048).
  ModelConfig c = preset_config("125m");
  c.vocab_size = 50304;
  EXPECT_EQ(parameter_count(c), 2 * 50304LL * 768 + 12 * (5 * 768LL * 768 + 3 * 768LL * 2048));
}

TEST(Config, Errors) {
  test::expect_error([] { preset_config("7b"); }, "--preset: unknown preset '7b' (known: tiny");
  ModelConfig c = preset_config("tiny");
  c.vocab_size = 1;
  test::expect_error([&] { validate(c); }, "--vocab");
  c.vocab_size = 10;
  c.num_heads = 5;  // 64 % 5 != 0
  test::expect_error([&] { validate(c); }, "must be divisible by --heads (5)");
  c.head_dim = 300;
  test::expect_error([&] { validate(c); }, "the head dim must be 1..256");
  c = preset_config("tiny");
  c.vocab_size = 10;
  c.num_layers = 0;
  test::expect_error([&] { TransNormerLM m(c); }, "--layers must be >= 1");
}

}  // namespace
}  // namespace lightring::model
