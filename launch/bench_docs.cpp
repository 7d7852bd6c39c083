// --docs of lightring-bench (see bench_docs.h).
#include "launch/bench_docs.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/error.h"
#include "launch/bench_options.h"
#include "testing/counter_hash.h"

namespace lightring::launch {

namespace {

const char kForms[] = "fixed:L, uniform:A..B or lognormal:MEAN[:SIGMA] (lengths in tokens >= 1)";

[[noreturn]] void bad_spec(const std::string& text, const std::string& why) {
  LR_THROW("--docs '", text, "': ", why, "; expected ", kForms);
}

int64_t spec_int(const std::string& text, const std::string& field) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(field.c_str(), &end, 10);
  if (field.empty() || *end != '\0' || errno == ERANGE)
    bad_spec(text, "'" + field + "' is not an integer");
  if (v < 1 || v > kMaxGlobalLen) bad_spec(text, "'" + field + "' is not a length in [1, 2^40]");
  return v;
}

double spec_double(const std::string& text, const std::string& field) {
  char* end = nullptr;
  const double v = std::strtod(field.c_str(), &end);
  if (field.empty() || *end != '\0' || !std::isfinite(v))
    bad_spec(text, "'" + field + "' is not a number");
  return v;
}

// A fixed 64-bit generator: draw i of stream `seed` (the same on every platform).
struct Draws {
  uint64_t seed, i = 0;
  uint64_t next() { return test::mix64(seed ^ test::mix64(++i + 0x9e3779b97f4a7c15ull)); }
  double uniform01() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1p-53; }  // (0, 1)
  double normal() {                                                                   // Box-Muller
    const double u = uniform01(), v = uniform01();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

}  // namespace

DocsSpec parse_docs_spec(const std::string& text) {
  DocsSpec s;
  if (text.empty()) return s;
  s.text = text;
  const size_t colon = text.find(':');
  if (colon == std::string::npos) bad_spec(text, "no ':' after the kind");
  const std::string kind = text.substr(0, colon), rest = text.substr(colon + 1);
  if (kind == "fixed") {
    s.kind = DocsSpec::Kind::kFixed;
    s.len = spec_int(text, rest);
  } else if (kind == "uniform") {
    const size_t dots = rest.find("..");
    if (dots == std::string::npos) bad_spec(text, "uniform takes A..B");
    s.kind = DocsSpec::Kind::kUniform;
    s.lo = spec_int(text, rest.substr(0, dots));
    s.hi = spec_int(text, rest.substr(dots + 2));
    if (s.hi < s.lo) bad_spec(text, "uniform needs A <= B");
  } else if (kind == "lognormal") {
    const size_t c2 = rest.find(':');
    s.kind = DocsSpec::Kind::kLognormal;
    s.mean = spec_double(text, rest.substr(0, c2));
    if (c2 != std::string::npos) s.sigma = spec_double(text, rest.substr(c2 + 1));
    if (!(s.mean >= 1.0)) bad_spec(text, "lognormal needs MEAN >= 1");
    if (!(s.sigma >= 0.0 && s.sigma <= 8.0)) bad_spec(text, "lognormal needs 0 <= SIGMA <= 8");
  } else {
    bad_spec(text, "unknown kind '" + kind + "'");
  }
  return s;
}

std::vector<int64_t> document_offsets(const DocsSpec& spec, int64_t T, uint64_t seed) {
  LR_CHECK(T >= 1, "document_offsets: T must be >= 1 (got ", T, ")");
  std::vector<int64_t> cu{0};
  if (!spec.enabled()) {
    cu.push_back(T);
    return cu;
  }
  Draws rng{seed * 0x2545f4914f6cdd1dull + 0x6a09e667f3bcc909ull};
  const double mu = std::log(spec.mean) - 0.5 * spec.sigma * spec.sigma;
  while (cu.back() < T) {
    int64_t len = 1;
    switch (spec.kind) {
      case DocsSpec::Kind::kFixed:
        len = spec.len;
        break;
      case DocsSpec::Kind::kUniform:
        len = spec.lo +
              static_cast<int64_t>(rng.next() % static_cast<uint64_t>(spec.hi - spec.lo + 1));
        break;
      case DocsSpec::Kind::kLognormal: {
        const double x = std::exp(mu + spec.sigma * rng.normal());
        len = x >= static_cast<double>(kMaxGlobalLen) ? kMaxGlobalLen
                                                      : std::max<int64_t>(1, std::llround(x));
        break;
      }
      case DocsSpec::Kind::kNone:
        break;
    }
    cu.push_back(std::min(T, cu.back() + len));  // the last document cut to fit
  }
  return cu;
}

std::vector<float> document_states(const BenchOptions& opt, int which, int64_t first,
                                   int64_t count) {
  const uint64_t per = static_cast<uint64_t>(opt.heads * opt.dim * opt.vdim);
  const uint64_t seed = opt.seed * 1000003ull + 0x5eed0000ull + static_cast<uint64_t>(which);
  std::vector<float> out(static_cast<size_t>(count) * per);
  for (size_t j = 0; j < out.size(); ++j)
    out[j] = test::uniform_value(seed, static_cast<uint64_t>(first) * per + j);
  return out;
}

void attach_documents(const BenchOptions& opt, const std::vector<int64_t>& cu, int64_t start,
                      Shard& shard) {
  if (cu.size() < 2 || !opt.docs.enabled()) return;
  const int64_t num_docs = static_cast<int64_t>(cu.size()) - 1;
  shard.docs = kernels::local_documents(cu.data(), num_docs, start, shard.s.seqlen);
  shard.use_docs = true;
  shard.use_s0 = shard.use_g = false;  // documents carry their own states
  if (!opt.states) return;
  const int64_t count = static_cast<int64_t>(shard.docs.offsets.size()) - 1;
  const size_t bytes = static_cast<size_t>(count) * shard.state_bytes();
  shard.doc_s0 = Buffer(shard.device, bytes);
  shard.doc_g = Buffer(shard.device, bytes);
  shard.doc_final = Buffer(shard.device, bytes);
  shard.d_doc_s0 = Buffer(shard.device, bytes);
  const std::vector<float> s0 = document_states(opt, 0, shard.docs.first, count);
  const std::vector<float> g = document_states(opt, 1, shard.docs.first, count);
  shard.doc_s0.upload(s0.data(), bytes);
  shard.doc_g.upload(g.data(), bytes);
  shard.use_doc_states = true;
}

}  // namespace lightring::launch
