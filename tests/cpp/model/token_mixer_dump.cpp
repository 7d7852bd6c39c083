// token_mixer_dump OUT.pt: one TransNormerLLM token mixer (csrc/model/transnormer.h) with random
// weights, its output on a random input and the gradients of sum(y²), written with
// torch::pickle_save for token_mixer_check.py, which runs lightring.nn.LightningAttention on the
// same weights and input and compares. Shapes: d 48, H 3 (dh 16), layer 1 of 3, B 2, N 37.
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>

#include <fstream>
#include <iostream>

#include "csrc/model/transnormer.h"

int main(int argc, char** argv) {
  using namespace lightring::model;
  if (argc != 2) {
    std::cerr << "usage: token_mixer_dump OUT.pt\n";
    return 2;
  }
  ModelConfig c;
  c.vocab_size = 2, c.d_model = 48, c.num_layers = 3, c.num_heads = 3, c.ffn_dim = 8;
  torch::manual_seed(21);
  TokenMixer mixer(c, /*layer=*/1);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : mixer->parameters()) p.normal_(0.0, 0.2);
  }
  const torch::Tensor x = torch::randn({2, 37, 48}).requires_grad_(true);
  const AttentionGroup group;
  const torch::Tensor y = mixer->forward(x, AttentionRows{&group, 1});
  y.pow(2).sum().backward();
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("d_model", c.d_model);
  d.insert("num_heads", c.num_heads);
  d.insert("layer", int64_t{1});
  d.insert("num_layers", c.num_layers);
  d.insert("qkvu_proj.weight", mixer->qkvu_proj->weight.detach());
  d.insert("out_proj.weight", mixer->out_proj->weight.detach());
  d.insert("decay", mixer->decay);
  d.insert("x", x.detach());
  d.insert("y", y.detach());
  d.insert("dx", x.grad());
  d.insert("d_qkvu", mixer->qkvu_proj->weight.grad());
  d.insert("d_out", mixer->out_proj->weight.grad());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(d));
  std::ofstream(argv[1], std::ios::binary).write(bytes.data(), bytes.size());
  return 0;
}
