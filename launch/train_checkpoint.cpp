// Checkpoint files of launch/train_checkpoint.h.
#include "launch/train_checkpoint.h"

#include <fcntl.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace lightring::launch {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "lightring-train/1";

using Dict = c10::impl::GenericDict;

Dict make_dict() {
  return Dict(c10::StringType::get(), c10::AnyType::get());
}

std::string state_key(const torch::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

Dict config_dict(const model::ModelConfig& c) {
  Dict d = make_dict();
  d.insert("preset", c.preset);
  d.insert("vocab_size", c.vocab_size);
  d.insert("d_model", c.d_model);
  d.insert("num_layers", c.num_layers);
  d.insert("num_heads", c.num_heads);
  d.insert("head_dim", c.resolved_head_dim());
  d.insert("ffn_dim", c.resolved_ffn_dim());
  d.insert("scale_embedding", c.scale_embedding);
  d.insert("norm_eps", c.norm_eps);
  d.insert("init_std", c.init_std);
  return d;
}

std::string show(const c10::IValue& v) {
  std::ostringstream os;
  if (v.isString()) {
    os << "'" << v.toStringRef() << "'";
  } else {
    os << v;
  }
  return os.str();
}

// Writes bytes to path through a temporary file in the same folder, fsync, rename.
void write_atomically(const fs::path& path, const char* data, size_t size) {
  const fs::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  LR_CHECK(fd >= 0, "cannot create ", tmp.string(), ": ", std::strerror(errno));
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      LR_THROW("cannot write ", tmp.string(), " (", done, " of ", size,
               " bytes): ", std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!synced || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    LR_THROW("cannot complete ", path.string(), ": ", std::strerror(synced ? errno : err));
  }
}

}  // namespace

std::string save_checkpoint(const std::string& dir, model::TransNormerLM& model,
                            torch::optim::AdamW& optimizer, const CheckpointInfo& info) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  LR_CHECK(!ec && fs::is_directory(dir), "--save-dir: cannot create '", dir, "': ", ec.message());
  Dict weights = make_dict(), opt = make_dict();
  for (const auto& p : model->named_parameters()) {
    weights.insert(p.key(), p.value().detach().cpu().clone());  // host copies: any machine loads
    auto it = optimizer.state().find(state_key(p.value()));
    if (it == optimizer.state().end()) continue;  // before the first step
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    Dict entry = make_dict();
    entry.insert("step", s.step());
    entry.insert("exp_avg", s.exp_avg().cpu().clone());
    entry.insert("exp_avg_sq", s.exp_avg_sq().cpu().clone());
    opt.insert(p.key(), entry);
  }
  Dict data = make_dict();
  data.insert("format", info.data_format);
  data.insert("seq_len", info.seq_len);
  data.insert("seed", static_cast<int64_t>(info.seed));
  data.insert("epoch", static_cast<int64_t>(info.position.epoch));
  data.insert("sequence", static_cast<int64_t>(info.position.sequence));
  Dict root = make_dict();
  root.insert("format", std::string(kFormat));
  root.insert("step", info.step);
  root.insert("config", config_dict(model->config()));
  root.insert("model", weights);
  root.insert("optimizer", opt);
  root.insert("data", data);
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    root.insert("rng", gen.get_state());
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(root));

  char name[32];
  std::snprintf(name, sizeof(name), "ckpt-%08lld.pt", static_cast<long long>(info.step));
  const fs::path file = fs::path(dir) / name;
  write_atomically(file, bytes.data(), bytes.size());
  const std::string latest = std::string(name) + "\n";
  write_atomically(fs::path(dir) / "latest", latest.data(), latest.size());
  return file.string();
}

void check_save_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  LR_CHECK(!ec && fs::is_directory(dir), "--save-dir: cannot create '", dir, "': ", ec.message());
  const fs::path probe = fs::path(dir) / ".lightring-write-test";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  LR_CHECK(fd >= 0, "--save-dir: cannot write in '", dir, "': ", std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

std::string resolve_checkpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path latest = fs::path(path) / "latest";
    std::ifstream in(latest);
    LR_CHECK(in.good(), "--resume: '", path,
             "' is a folder without a 'latest' file (no checkpoint ", "was saved there)");
    std::string name;
    std::getline(in, name);
    LR_CHECK(!name.empty(), "--resume: ", latest.string(), " is empty");
    return (fs::path(path) / name).string();
  }
  LR_CHECK(fs::is_regular_file(path, ec), "--resume: no checkpoint file '", path, "'");
  return path;
}

CheckpointInfo load_checkpoint(const std::string& file, model::TransNormerLM& model,
                               torch::optim::AdamW& optimizer, const CheckpointInfo& expected) {
  std::ifstream in(file, std::ios::binary);
  LR_CHECK(in.good(), "checkpoint ", file, ": cannot open: ", std::strerror(errno));
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    LR_THROW("checkpoint ", file, " (", bytes.size(),
             " bytes) is not readable: truncated or corrupt (", what, ")");
  }
  const std::string bad = "checkpoint " + file + ": ";
  LR_CHECK(value.isGenericDict(), bad, "not a lightring-train checkpoint (no dict at the top)");
  const auto root = value.toGenericDict();
  LR_CHECK(root.contains("format") && root.at("format").isString() &&
               root.at("format").toStringRef() == kFormat,
           bad, "not a ", kFormat, " checkpoint");
  for (const char* key : {"step", "config", "model", "optimizer", "data", "rng"})
    LR_CHECK(root.contains(key), bad, "no '", key, "' entry");

  // Every difference of the model config and the data, listed.
  std::ostringstream diff;
  const auto saved = root.at("config").toGenericDict();
  for (const auto& kv : config_dict(model->config())) {
    const std::string key = kv.key().toStringRef();
    if (!saved.contains(key)) {
      diff << "\n  " << key << ": missing in the checkpoint";
    } else if (key != "preset" && !(saved.at(key) == kv.value())) {
      diff << "\n  " << key << ": " << show(saved.at(key)) << " in the checkpoint, "
           << show(kv.value()) << " in this run";
    }
  }
  const auto data = root.at("data").toGenericDict();
  if (data.at("format").toStringRef() != expected.data_format)
    diff << "\n  --data: '" << data.at("format").toStringRef() << "' in the checkpoint, '"
         << expected.data_format << "' in this run";
  if (data.at("seq_len").toInt() != expected.seq_len)
    diff << "\n  --seq-len: " << data.at("seq_len").toInt() << " in the checkpoint, "
         << expected.seq_len << " in this run";
  LR_CHECK(diff.tellp() == 0, bad, "does not match this run (preset '",
           saved.contains("preset") ? saved.at("preset").toStringRef() : "?", "' there, '",
           model->config().preset, "' here):", diff.str());
  const auto weights = root.at("model").toGenericDict();
  const auto opt = root.at("optimizer").toGenericDict();
  for (const auto& p : model->named_parameters()) {
    LR_CHECK(weights.contains(p.key()), bad, "no weight '", p.key(), "'");
    const torch::Tensor w = weights.at(p.key()).toTensor();
    LR_CHECK(w.sizes() == p.value().sizes() && w.scalar_type() == p.value().scalar_type(), bad,
             "weight '", p.key(), "' is ", w.sizes(), " ", w.scalar_type(), ", the model's is ",
             p.value().sizes(), " ", p.value().scalar_type());
    if (opt.contains(p.key())) {
      const auto s = opt.at(p.key()).toGenericDict();
      for (const char* key : {"exp_avg", "exp_avg_sq"})
        LR_CHECK(s.contains(key) && s.at(key).toTensor().sizes() == p.value().sizes(), bad,
                 "optimizer state '", key, "' of '", p.key(), "' is missing or misshapen");
    }
  }

  // Everything checked: apply.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) p.value().copy_(weights.at(p.key()).toTensor());
  }
  optimizer.state().clear();
  for (const auto& p : model->named_parameters()) {
    if (!opt.contains(p.key())) continue;
    const auto s = opt.at(p.key()).toGenericDict();
    auto state = std::make_unique<torch::optim::AdamWParamState>();
    state->step(s.at("step").toInt());
    // On the device of the parameter (a GPU run resumes a host checkpoint).
    state->exp_avg(s.at("exp_avg").toTensor().to(p.value().device()).clone());
    state->exp_avg_sq(s.at("exp_avg_sq").toTensor().to(p.value().device()).clone());
    optimizer.state()[state_key(p.value())] = std::move(state);
  }
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(root.at("rng").toTensor());
  }
  CheckpointInfo info;
  info.step = root.at("step").toInt();
  info.position.epoch = static_cast<uint64_t>(data.at("epoch").toInt());
  info.position.sequence = static_cast<uint64_t>(data.at("sequence").toInt());
  info.data_format = data.at("format").toStringRef();
  info.seq_len = data.at("seq_len").toInt();
  info.seed = static_cast<uint64_t>(data.at("seed").toInt());
  return info;
}

}  // namespace lightring::launch
