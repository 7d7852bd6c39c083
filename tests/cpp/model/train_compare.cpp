// train_compare: the numerical check behind the lightring-train ctest entries (train_cases.sh).
// Exit status 0 only when every comparison holds; 1 with one line per difference otherwise.
//
//   train_compare --log A.jsonl B.jsonl [--rtol R] [--from-step K]
//       the "train" rows of B (steps > K) each have a row of A with the same step, and
//       |loss_A - loss_B| <= R·|loss_A| (R = 0: the same printed value, i.e. bit-exact doubles);
//       B must hold at least one such row
//   train_compare --ckpt A.pt B.pt [--rtol R]
//       same step and data position; every model tensor and AdamW moment of B within R of A's
//       (||a - b||_2 <= R · ||a||_2 per tensor; R = 0: torch::equal)
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace {

int g_failures = 0;

void fail(const std::string& message) {
  std::cerr << "train_compare: " << message << "\n";
  ++g_failures;
}

// The raw text of "key": value in a JSON line of lightring-train's log (flat objects).
std::string field(const std::string& line, const std::string& key) {
  const std::string pattern = "\"" + key + "\":";
  const size_t at = line.find(pattern);
  if (at == std::string::npos) return "";
  const size_t begin = at + pattern.size();
  size_t end = begin;
  while (end < line.size() && line[end] != ',' && line[end] != '}') ++end;
  return line.substr(begin, end - begin);
}

std::map<long long, std::string> train_losses(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) fail("cannot read " + path);
  std::map<long long, std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (field(line, "kind") != "\"train\"") continue;
    out[std::atoll(field(line, "step").c_str())] = field(line, "loss");
  }
  return out;
}

void compare_logs(const std::string& a, const std::string& b, double rtol, long long from) {
  const auto la = train_losses(a), lb = train_losses(b);
  int compared = 0;
  double worst = 0;
  for (const auto& [step, loss_b] : lb) {
    if (step <= from) continue;
    auto it = la.find(step);
    if (it == la.end()) {
      fail(a + " has no train row for step " + std::to_string(step));
      continue;
    }
    ++compared;
    const double x = std::atof(it->second.c_str()), y = std::atof(loss_b.c_str());
    const double rel = std::abs(x - y) / std::max(std::abs(x), 1e-30);
    worst = std::max(worst, rel);
    const bool ok = rtol == 0 ? it->second == loss_b : rel <= rtol;
    if (!ok)
      fail("step " + std::to_string(step) + ": loss " + it->second + " in " + a + ", " + loss_b +
           " in " + b);
  }
  if (compared == 0) fail(b + ": no train row after step " + std::to_string(from));
  std::printf("logs: %d steps compared, worst relative loss difference %.3g (rtol %g)\n", compared,
              worst, rtol);
}

c10::impl::GenericDict load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    fail("cannot read " + path);
    std::exit(1);
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict();
}

void compare_tensor(const std::string& name, const torch::Tensor& x, const torch::Tensor& y,
                    double rtol, double* worst) {
  if (x.sizes() != y.sizes()) return fail(name + ": shapes differ");
  if (rtol == 0) {
    if (!torch::equal(x, y)) fail(name + ": not bit-identical");
    return;
  }
  const torch::Tensor xd = x.to(torch::kDouble), yd = y.to(torch::kDouble);
  const double rel = (xd - yd).norm().item<double>() / std::max(xd.norm().item<double>(), 1e-300);
  *worst = std::max(*worst, rel);
  if (rel > rtol) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.3g", rel);
    fail(name + ": relative difference " + buf);
  }
}

void compare_ckpts(const std::string& a, const std::string& b, double rtol) {
  const auto ca = load(a), cb = load(b);
  if (ca.at("step").toInt() != cb.at("step").toInt()) fail("the checkpoints' steps differ");
  const auto da = ca.at("data").toGenericDict(), db = cb.at("data").toGenericDict();
  for (const char* key : {"epoch", "sequence"})
    if (da.at(key).toInt() != db.at(key).toInt()) fail(std::string("data position ") + key);
  double worst = 0;
  int tensors = 0;
  const auto ma = ca.at("model").toGenericDict(), mb = cb.at("model").toGenericDict();
  if (ma.size() != mb.size()) fail("the checkpoints hold different parameter sets");
  for (const auto& kv : ma) {
    const std::string name = kv.key().toStringRef();
    if (!mb.contains(name)) {
      fail(b + " has no " + name);
      continue;
    }
    compare_tensor(name, kv.value().toTensor(), mb.at(name).toTensor(), rtol, &worst);
    ++tensors;
  }
  const auto oa = ca.at("optimizer").toGenericDict(), ob = cb.at("optimizer").toGenericDict();
  if (oa.size() != ma.size() || ob.size() != oa.size()) fail("optimizer state incomplete");
  for (const auto& kv : oa) {
    const std::string name = kv.key().toStringRef();
    if (!ob.contains(name)) continue;
    const auto sa = kv.value().toGenericDict(), sb = ob.at(name).toGenericDict();
    if (sa.at("step").toInt() != sb.at("step").toInt()) fail(name + ": AdamW step differs");
    for (const char* key : {"exp_avg", "exp_avg_sq"}) {
      compare_tensor(name + "." + key, sa.at(key).toTensor(), sb.at(key).toTensor(), rtol, &worst);
      ++tensors;
    }
  }
  std::printf("checkpoints: %d tensors compared, worst relative difference %.3g (rtol %g)\n",
              tensors, worst, rtol);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  double rtol = 0;
  long long from = 0;
  std::string mode, a, b;
  for (size_t i = 0; i < args.size(); ++i) {
    if ((args[i] == "--log" || args[i] == "--ckpt") && i + 2 < args.size()) {
      mode = args[i], a = args[i + 1], b = args[i + 2];
      i += 2;
    } else if (args[i] == "--rtol" && i + 1 < args.size()) {
      rtol = std::atof(args[++i].c_str());
    } else if (args[i] == "--from-step" && i + 1 < args.size()) {
      from = std::atoll(args[++i].c_str());
    } else {
      std::cerr << "usage: train_compare --log|--ckpt A B [--rtol R] [--from-step K]\n";
      return 2;
    }
  }
  if (mode == "--log") compare_logs(a, b, rtol, from);
  if (mode == "--ckpt") compare_ckpts(a, b, rtol);
  if (mode.empty()) return 2;
  return g_failures == 0 ? 0 : 1;
}
