// The model of csrc/model/transnormer.h (fp32, lightring attention) against a float64 libtorch
// reference of the same architecture written from the paper's equations, with the attention
// as its recurrence S_t = λ S_{t-1} + k_tᵀ v_t, o_t = q_t S_t. Both sides read the same
// weights; logits and every parameter gradient of a cross-entropy loss must agree.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "common/expect_error.h"
#include "csrc/model/transnormer.h"
#include "kernels/attention.h"

namespace lightring::model {
namespace {

// ---------------------------------------------------------------------------------------------
// The float64 reference.

using Weights = std::map<std::string, torch::Tensor>;

torch::Tensor ref_norm(const torch::Tensor& x, double eps) {
  return x / torch::sqrt(x.pow(2).mean(-1, true) + eps);
}

// Per row, the positions where a packed document starts (the state restarts from zero there);
// empty: one sequence per row.
using DocStarts = std::vector<std::vector<int64_t>>;

// q, k [B, N, H, D], v [B, N, H, E], rate [H] -> o [B, N, H, E], one token at a time.
torch::Tensor ref_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& rate, const DocStarts& starts = {}) {
  const int64_t b = q.size(0), n = q.size(1), h = q.size(2), d = q.size(3), e = v.size(3);
  const torch::Tensor lambda = torch::exp(-rate).view({1, h, 1, 1});
  torch::Tensor s = torch::zeros({b, h, d, e}, q.options());
  std::vector<torch::Tensor> out;
  for (int64_t t = 0; t < n; ++t) {
    std::vector<double> keep(static_cast<size_t>(b), 1.0);  // 0: row r starts a document at t
    for (size_t r = 0; r < starts.size(); ++r) {
      for (const int64_t start : starts[r]) keep[r] = start == t ? 0.0 : keep[r];
    }
    s = s * torch::tensor(keep, q.options()).view({b, 1, 1, 1});
    const torch::Tensor kt = k.select(1, t).unsqueeze(-1);  // [B, H, D, 1]
    const torch::Tensor vt = v.select(1, t).unsqueeze(-2);  // [B, H, 1, E]
    s = lambda * s + kt * vt;
    out.push_back(torch::matmul(q.select(1, t).unsqueeze(-2), s).squeeze(-2));  // [B, H, E]
  }
  return torch::stack(out, 1);
}

// The paper's rate of layer l of L with H heads: s_h (1 - l/(L-1) + 1e-5), s_h for L = 1.
torch::Tensor ref_rate(int64_t heads, int64_t layer, int64_t num_layers) {
  std::vector<double> s(static_cast<size_t>(heads));
  // s_h = 2^(-8(h+1)/P) for the largest power of two P <= H, then every other slope of 2P.
  int64_t p = 1;
  while (2 * p <= heads) p *= 2;
  for (int64_t i = 0; i < p; ++i) s[i] = std::pow(2.0, -8.0 * (i + 1) / p);
  for (int64_t i = p; i < heads; ++i) s[i] = std::pow(2.0, -8.0 * (2 * (i - p) + 1) / (2 * p));
  torch::Tensor r = torch::tensor(s, torch::kDouble);
  if (num_layers > 1) r = r * (1.0 - double(layer) / double(num_layers - 1) + 1e-5);
  return r;
}

torch::Tensor ref_logits(const ModelConfig& c, Weights& w, const torch::Tensor& ids,
                         const DocStarts& starts = {}) {
  const int64_t b = ids.size(0), n = ids.size(1), h = c.num_heads, dh = c.resolved_head_dim();
  torch::Tensor x = w["embed.weight"].index_select(0, ids.flatten()).view({b, n, c.d_model});
  if (c.scale_embedding) x = x * std::sqrt(double(c.d_model));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string pre = "layers." + std::to_string(l) + ".";
    const torch::Tensor a = ref_norm(x, c.norm_eps);
    const auto qkvu = torch::matmul(a, w[pre + "token_mixer.qkvu_proj.weight"].t()).chunk(4, -1);
    const torch::Tensor q = torch::silu(qkvu[0]).view({b, n, h, dh});
    const torch::Tensor k = torch::silu(qkvu[1]).view({b, n, h, dh});
    const torch::Tensor v = qkvu[2].reshape({b, n, h, dh});
    const torch::Tensor o =
        ref_attention(q, k, v, ref_rate(h, l, c.num_layers), starts).reshape({b, n, h * dh});
    x = x + torch::matmul(qkvu[3] * ref_norm(o, c.norm_eps),
                          w[pre + "token_mixer.out_proj.weight"].t());
    const torch::Tensor m = ref_norm(x, c.norm_eps);
    const torch::Tensor g = torch::matmul(m, w[pre + "channel_mixer.w1.weight"].t()) *
                            torch::matmul(m, w[pre + "channel_mixer.w2.weight"].t());
    x = x + torch::matmul(g, w[pre + "channel_mixer.w3.weight"].t());
  }
  return torch::matmul(ref_norm(x, c.norm_eps), w["lm_head.weight"].t());
}

// Largest |a - b| over the largest |b|.
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor bd = b.to(torch::kDouble);
  return (a.to(torch::kDouble) - bd).abs().max().item<double>() /
         std::max(bd.abs().max().item<double>(), 1e-30);
}

// ---------------------------------------------------------------------------------------------

struct Case {
  const char* name;
  int64_t vocab, d, layers, heads, head_dim, ffn, batch, seqlen;
  bool scale_embedding;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class ModelVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(ModelVsReference, LogitsAndGradients) {
  const Case& tc = GetParam();
  ModelConfig c;
  c.preset = "custom";
  c.vocab_size = tc.vocab, c.d_model = tc.d, c.num_layers = tc.layers, c.num_heads = tc.heads;
  c.head_dim = tc.head_dim, c.ffn_dim = tc.ffn, c.scale_embedding = tc.scale_embedding;
  torch::manual_seed(7);
  TransNormerLM model(c);
  // Larger weights than the 0.02 init, so that every path (the attention state, the gate) moves
  // the logits well above fp32 rounding.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.normal_(0.0, 0.3);
  }
  const torch::Tensor ids = torch::randint(tc.vocab, {tc.batch, tc.seqlen}, torch::kLong);
  const torch::Tensor targets = torch::randint(tc.vocab, {tc.batch * tc.seqlen}, torch::kLong);

  AttentionGroup group;  // one rank: kernels::forward / backward
  const torch::Tensor logits = model->forward(ids, group);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{tc.batch, tc.seqlen, tc.vocab}));
  ASSERT_EQ(logits.scalar_type(), torch::kFloat);
  torch::nn::functional::cross_entropy(logits.view({-1, tc.vocab}), targets).backward();

  Weights w;
  for (const auto& p : model->named_parameters()) {
    w[p.key()] = p.value().detach().to(torch::kDouble).requires_grad_(true);
  }
  const torch::Tensor ref = ref_logits(c, w, ids);
  torch::nn::functional::cross_entropy(ref.view({-1, tc.vocab}), targets).backward();

  EXPECT_LT(rel_err(logits, ref), 2e-5) << "logits";
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_LT(rel_err(p.value().grad(), w[p.key()].grad()), 1e-4) << "grad of " << p.key();
  }
  // The decay buffers are the paper's rates.
  for (int64_t l = 0; l < c.num_layers; ++l) {
    EXPECT_LT(rel_err(model->layers[l]->token_mixer->decay, ref_rate(c.num_heads, l, c.num_layers)),
              1e-6)
        << "decay of layer " << l;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ModelVsReference,
                         ::testing::Values(Case{"odd", 53, 24, 3, 3, 8, 40, 2, 37, true},
                                           Case{"one_layer", 31, 32, 1, 4, 8, 48, 1, 65, false},
                                           Case{"head_dim_flag", 17, 20, 2, 5, 6, 24, 3, 19, true},
                                           Case{"tiny_like", 257, 64, 2, 4, 16, 128, 2, 64, true}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// Packed documents: each row has its own document boundaries (AttentionGroup::documents, one
// group per row); the reference restarts the state at every document start.
TEST(Model, PackedDocumentsPerRow) {
  ModelConfig c;
  c.preset = "custom";
  c.vocab_size = 29, c.d_model = 24, c.num_layers = 2, c.num_heads = 3, c.ffn_dim = 32;
  torch::manual_seed(11);
  TransNormerLM model(c);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.normal_(0.0, 0.3);
  }
  const int64_t n = 41;
  const std::vector<std::vector<int64_t>> cu = {{0, 7, 8, 30, n}, {0, n}, {0, 20, n}};
  std::vector<kernels::LocalDocuments> docs;
  DocStarts starts;
  for (const auto& row : cu) {
    docs.push_back(kernels::local_documents(row.data(), int64_t(row.size()) - 1, 0, n));
    starts.emplace_back(row.begin(), row.end() - 1);
  }
  std::vector<AttentionGroup> rows(cu.size());
  for (size_t r = 0; r < rows.size(); ++r) rows[r].documents = &docs[r];
  const torch::Tensor ids = torch::randint(c.vocab_size, {3, n}, torch::kLong);
  const torch::Tensor logits = model->forward(ids, rows);
  logits.pow(2).mean().backward();

  Weights w;
  for (const auto& p : model->named_parameters()) {
    w[p.key()] = p.value().detach().to(torch::kDouble).requires_grad_(true);
  }
  const torch::Tensor ref = ref_logits(c, w, ids, starts);
  ref.pow(2).mean().backward();
  EXPECT_LT(rel_err(logits, ref), 2e-5);
  for (const auto& p : model->named_parameters()) {
    EXPECT_LT(rel_err(p.value().grad(), w[p.key()].grad()), 1e-4) << "grad of " << p.key();
  }
  // The boundaries matter: without them the reference is another function.
  EXPECT_GT(rel_err(logits, ref_logits(c, w, ids).detach()), 1e-3);
  // One group per row, or one for all.
  test::expect_error([&] { model->forward(ids, std::vector<AttentionGroup>(2)); },
                     "one attention group per row: 2 groups for 3 rows");
}

// Gradients flow through the attention: a model whose attention output is cut (a zero gate
// weight) has different input-projection gradients than the full one, so the test above
// exercises the kernels' backward and not only the linear layers around it.
TEST(Model, AttentionBackwardReachesTheProjections) {
  ModelConfig c = preset_config("tiny");
  c.vocab_size = 40;
  torch::manual_seed(3);
  TransNormerLM model(c);
  const torch::Tensor ids = torch::randint(40, {1, 33}, torch::kLong);
  AttentionGroup group;
  model->forward(ids, group).pow(2).sum().backward();
  const torch::Tensor g = model->layers[0]->token_mixer->qkvu_proj->weight.grad();
  const int64_t hd = c.num_heads * c.resolved_head_dim();
  // Rows of q and k (the first 2·H·dh rows) get a gradient only through the attention.
  EXPECT_GT(g.narrow(0, 0, 2 * hd).abs().max().item<double>(), 0.0);
}

}  // namespace
}  // namespace lightring::model
