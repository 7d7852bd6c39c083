// The recurrent form of csrc/model/generate.h against the model's forward: token by token, the
// logits of every position must be those of TransNormerLM::forward over the whole sequence.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "common/expect_error.h"
#include "csrc/model/generate.h"

namespace lightring::model {
namespace {

TransNormerLM make_model(int64_t layers, int64_t heads, bool scale_embedding) {
  ModelConfig c;
  c.preset = "custom";
  c.vocab_size = 37, c.d_model = 24, c.num_layers = layers, c.num_heads = heads, c.ffn_dim = 40;
  c.scale_embedding = scale_embedding;
  torch::manual_seed(5);
  TransNormerLM model(c);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0.0, 0.3);
  return model;
}

TEST(Generate, DecodeStepsEqualTheForward) {
  for (auto [layers, heads, scale] :
       {std::tuple<int64_t, int64_t, bool>{3, 3, true}, {1, 4, false}, {2, 6, true}}) {
    TransNormerLM model = make_model(layers, heads, scale);
    const int64_t b = 2, n = 29;
    const torch::Tensor ids = torch::randint(37, {b, n}, torch::kLong);
    torch::Tensor full;
    {
      torch::NoGradGuard no_grad;
      full = model->forward(ids, AttentionGroup{});
    }
    DecodeState state = initial_decode_state(model, b);
    double worst = 0;
    for (int64_t t = 0; t < n; ++t) {
      const torch::Tensor step = decode_step(model, ids.select(1, t).contiguous(), state);
      const torch::Tensor ref = full.select(1, t);
      worst =
          std::max(worst, (step - ref).abs().max().item<double>() / ref.abs().max().item<double>());
    }
    EXPECT_LT(worst, 1e-5) << "L=" << layers << " H=" << heads;
  }
}

TEST(Generate, SamplingIsSeededAndGreedyIsArgmax) {
  TransNormerLM model = make_model(2, 4, true);
  const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
  SamplingOptions o;
  o.num_tokens = 12;
  o.temperature = 0;
  const std::vector<int64_t> greedy = generate(model, prompt, o);
  ASSERT_EQ(greedy.size(), 12u);
  // Greedy: each token is the argmax of the forward over prompt + what came before.
  std::vector<int64_t> seq = prompt;
  for (const int64_t t : greedy) {
    torch::NoGradGuard no_grad;
    const torch::Tensor logits =
        model->forward(torch::tensor(seq, torch::kLong).view({1, -1}), AttentionGroup{});
    EXPECT_EQ(logits[0][-1].argmax().item<int64_t>(), t);
    seq.push_back(t);
  }
  o.temperature = 1.0;
  o.top_k = 5;
  o.seed = 9;
  const std::vector<int64_t> a = generate(model, prompt, o), b = generate(model, prompt, o);
  EXPECT_EQ(a, b);
  for (const int64_t t : a) EXPECT_TRUE(t >= 0 && t < 37);
  o.seed = 10;
  EXPECT_NE(generate(model, prompt, o), a);
  test::expect_error([&] { generate(model, {}, o); }, "at least one token");
  test::expect_error([&] { generate(model, {37}, o); }, "prompt token 37 is outside");
}

}  // namespace
}  // namespace lightring::model
