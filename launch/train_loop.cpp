// The training loop of launch/train_loop.h.
#include "launch/train_loop.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "csrc/data/loader.h"
#include "csrc/data/sp_slice.h"
#include "csrc/model/generate.h"
#include "csrc/model/transnormer.h"
#include "kernels/documents.h"
#include "launch/train_checkpoint.h"
#include "launch/train_device.h"
#include "launch/train_dist.h"
#include "launch/train_log.h"
#include "launch/train_reduce.h"
#ifdef LIGHTRING_TRAIN_NCCL
#include "launch/train_nccl_reduce.h"
#endif

namespace lightring::launch {

volatile std::sig_atomic_t g_stop_requested = 0;

namespace {

const char* g_activity = "starting";

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// This rank's shard of a batch of sequences, as tensors.
struct Batch {
  torch::Tensor ids, targets;  // [B, n] int64; targets kIgnoreTarget (-1) where nothing counts
  int64_t begin = 0;           // the shard's first global position
  int64_t count = 0;           // targets that count
  // synthetic-recall: per row, the local answer positions and whether each answer's key lies on
  // an earlier SP shard (its state had to cross a shard boundary).
  std::vector<std::vector<int32_t>> answers;
  std::vector<std::vector<uint8_t>> key_elsewhere;
  // Per row, the packed documents of the shard (kernels::local_documents of the sequence's
  // global cu_seqlens), and the attention group of each row pointing at them.
  std::vector<kernels::LocalDocuments> docs;
  std::vector<model::AttentionGroup> rows;
};

// The batch of this rank, on `device`; with `attention` non-null, per-row documents and groups
// (a copy of *attention each, pointing at its row's documents).
Batch make_batch(const std::vector<data::Sequence>& seqs, int sp_size, int sp_rank,
                 const model::AttentionGroup* attention, const torch::Device& device) {
  Batch b;
  std::vector<int32_t> ids, targets;
  int64_t n = 0;
  for (const data::Sequence& s : seqs) {
    const data::SequenceShard shard = data::sp_slice(s, sp_size, sp_rank);
    n = shard.end - shard.begin;
    b.begin = shard.begin;
    ids.insert(ids.end(), shard.input_ids.begin(), shard.input_ids.end());
    targets.insert(targets.end(), shard.target_ids.begin(), shard.target_ids.end());
    b.answers.push_back(shard.answer_positions);
    std::vector<uint8_t> elsewhere;
    for (const int32_t key : shard.answer_key_positions) elsewhere.push_back(key < shard.begin);
    b.key_elsewhere.push_back(std::move(elsewhere));
    if (attention != nullptr) {
      const std::vector<int64_t> cu(shard.global_cu_seqlens.begin(), shard.global_cu_seqlens.end());
      b.docs.push_back(
          kernels::local_documents(cu.data(), static_cast<int64_t>(cu.size()) - 1, shard.begin, n));
    }
  }
  for (const kernels::LocalDocuments& d : b.docs) {
    b.rows.push_back(*attention);
    b.rows.back().documents = &d;
  }
  const int64_t rows = static_cast<int64_t>(seqs.size());
  b.ids = torch::tensor(ids, torch::kInt).view({rows, n}).to(torch::kLong);
  b.targets = torch::tensor(targets, torch::kInt).view({rows, n}).to(torch::kLong);
  b.count = (b.targets != data::kIgnoreTarget).sum().item<int64_t>();
  b.ids = b.ids.to(device);
  b.targets = b.targets.to(device);
  return b;
}

// Logits in fp32 whatever the compute precision.
torch::Tensor logits_of(model::TransNormerLM& model, const Batch& b,
                        const model::AttentionGroup& attention, bool bf16,
                        const TrainDevice& device) {
  Autocast autocast(bf16, device);  // launch/train_device.h: bf16 compute, fp32 master weights
  const torch::Tensor logits =
      b.rows.empty() ? model->forward(b.ids, attention) : model->forward(b.ids, b.rows);
  return logits.to(torch::kFloat);
}

torch::Tensor loss_sum(const torch::Tensor& logits, const torch::Tensor& targets) {
  namespace F = torch::nn::functional;
  return F::cross_entropy(
      logits.view({-1, logits.size(-1)}), targets.view({-1}),
      F::CrossEntropyFuncOptions().ignore_index(data::kIgnoreTarget).reduction(torch::kSum));
}

// Training FLOPs per token (docs/training.md, "MFU"): 6 per weight of every matmul (the
// embedding is a lookup) plus the attention as its recurrence, 4·dh² per head and layer forward
// (the state update kᵀv and the readout q·S), three times that with backward.
double flops_per_token(const model::ModelConfig& c) {
  const double dh = static_cast<double>(c.resolved_head_dim());
  const double matmul = static_cast<double>(model::non_embedding_parameter_count(c)) +
                        static_cast<double>(c.vocab_size) * c.d_model;
  return 6.0 * matmul + 12.0 * c.num_layers * c.num_heads * dh * dh;
}

class Trainer {
 public:
  Trainer(const TrainOptions& o, comm::MpiCommunicator& world) : o_(o), world_(world) {}
  int run();

 private:
  void setup();
  void train_step(int64_t step);
  void evaluate(int64_t step);
  void save(int64_t step);
  void sample();
  std::vector<torch::Tensor> replica_tensors();
  void make_reducer();
  void reduce_begin();
  void reduce_finish();
  int num_buckets() const;

  const TrainOptions& o_;
  comm::MpiCommunicator& world_;
  comm::ProcessGroups groups_;
  model::AttentionGroup attention_;
  data::Dataset dataset_;
  model::ModelConfig config_;
  model::TransNormerLM model_{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<GradientReducer> reducer_;  // CPU: MPI buckets
#ifdef LIGHTRING_TRAIN_NCCL
  std::unique_ptr<NcclGradientReducer> nccl_reducer_;  // GPUs: NCCL buckets
#endif
  TrainDevice device_;
  std::unique_ptr<comm::Communicator> device_sp_;  // the NCCL SP group of a GPU run with SP > 1
  std::unique_ptr<data::ShardedLoader> loader_;
  std::unique_ptr<JsonlLog> log_;
  int64_t first_step_ = 0;  // completed steps at start (resume)
  bool root_ = false, stop_ = false;
  bool documents_ = false;
  int64_t fail_at_step_ = -1;  // LIGHTRING_TRAIN_FAIL_AT on this rank (tests), -1: never  // the
                               // attention restarts at the document boundaries of a sequence
  Clock::time_point start_;
  double train_seconds_ = 0.0;
};

void Trainer::setup() {
  root_ = world_.rank() == 0;
  g_activity = "opening the data";
  std::string error;
  try {
    dataset_ = data::open_dataset(o_.data);
    config_ = o_.model_config(dataset_.vocab_size);
    LR_CHECK(config_.vocab_size >= dataset_.vocab_size, "--vocab ", config_.vocab_size,
             " is smaller than the vocabulary of the data (", dataset_.vocab_size, ": ",
             dataset_.description, " has token ids up to ", dataset_.vocab_size - 1, ")");
    model::validate(config_);
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree_on_errors(world_, error,
                  "lightring-train: --data " + o_.data.format +
                      (o_.data.path.empty() ? "" : " --data-path " + o_.data.path));

  // Fault injection for the no-hang tests: LIGHTRING_TRAIN_FAIL_AT=STEP@RANK makes world rank
  // RANK throw at the start of step STEP (docs/training.md).
  if (const char* env = std::getenv("LIGHTRING_TRAIN_FAIL_AT"); env && *env) {
    long long step = -1, rank = -1;
    char tail = 0;
    LR_CHECK(std::sscanf(env, "%lld@%lld%c", &step, &rank, &tail) == 2 && step >= 1 && rank >= 0,
             "LIGHTRING_TRAIN_FAIL_AT must be STEP@RANK (got '", env, "')");
    if (rank == world_.rank()) fail_at_step_ = step;
  }
  g_activity = "choosing the device";
  error.clear();
  try {
    device_ = resolve_device(o_.device, world_);
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree_on_errors(world_, error, "lightring-train: --device " + o_.device);
  g_activity = "setting up the process groups";
  // Every rank throws the same error when an SP group would straddle nodes (--sp-across-nodes).
  const parallel::NodeLayout nodes = check_sp_placement(world_, o_.sp, o_.sp_across_nodes);
  groups_ = comm::make_groups(world_, o_.sp);
  attention_.options.link = sp_group_link(nodes, groups_.layout, attention_.options.link);
  attention_.sp = attention_group(*groups_.sp, device_, world_.timeout_s(), &device_sp_);
  attention_.options.schedule = o_.schedule;
  // synthetic-recall holds one sample per sequence: nothing to restart.
  documents_ = o_.documents && dataset_.documents != nullptr;

  torch::manual_seed(o_.seed);
  model_ = model::TransNormerLM(config_);  // initialised on the CPU: the same on every device
  model_->to(device_.device);
  torch::optim::AdamWOptions adam(o_.lr);
  adam.betas({o_.beta1, o_.beta2}).eps(o_.adam_eps).weight_decay(o_.weight_decay);
  optimizer_ = std::make_unique<torch::optim::AdamW>(model_->parameters(), adam);
  make_reducer();
  loader_ = std::make_unique<data::ShardedLoader>(*dataset_.train, groups_.layout.dp_rank,
                                                  groups_.layout.dp_size);
  if (!o_.resume.empty()) {
    g_activity = "loading the checkpoint";
    error.clear();
    std::string file = o_.resume;
    try {
      file = resolve_checkpoint(o_.resume);
      CheckpointInfo expected;
      expected.data_format = o_.data.format;
      expected.seq_len = o_.data.seq_len;
      const CheckpointInfo info = load_checkpoint(file, model_, *optimizer_, expected);
      loader_->seek(info.position);
      first_step_ = info.step;
    } catch (const std::exception& e) {
      error = e.what();
    }
    agree_on_errors(world_, error, "lightring-train: --resume " + o_.resume);
    if (root_) std::cout << "resumed from " << file << " at step " << first_step_ << "\n";
  }
  g_activity = "checking that every rank holds the same parameters";
  check_identical(world_, replica_tensors(), "parameters and optimizer state",
                  o_.resume.empty() ? "at start" : "after --resume");
  error.clear();
  try {
    // An unwritable --save-dir fails now, not at the first checkpoint hours later.
    if (root_ && !o_.save_dir.empty() && !o_.generate_only) check_save_dir(o_.save_dir);
    log_ = std::make_unique<JsonlLog>(root_ ? o_.log_path : std::string(), !o_.resume.empty());
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree_on_errors(world_, error, "lightring-train: --log / --save-dir");
}

// CPU: the MPI reducer. GPUs: NCCL when there is more than one rank; one GPU needs none (its
// gradients are the sums already).
void Trainer::make_reducer() {
  if (!device_.is_cuda()) {
    reducer_ = std::make_unique<GradientReducer>(world_, model_->parameters(), o_.bucket_mb * 1e6);
    return;
  }
  if (world_.size() == 1) return;
#ifdef LIGHTRING_TRAIN_NCCL
  nccl_reducer_ = std::make_unique<NcclGradientReducer>(world_, model_->parameters(),
                                                        o_.bucket_mb * 1e6, device_.device.index());
#else
  LR_THROW("--device cuda with ", world_.size(),
           " ranks: this build has no NCCL for the gradient all-reduce");
#endif
}

void Trainer::reduce_begin() {
  if (reducer_) reducer_->begin();
#ifdef LIGHTRING_TRAIN_NCCL
  if (nccl_reducer_) nccl_reducer_->begin();
#endif
}

void Trainer::reduce_finish() {
  if (reducer_) reducer_->finish();
#ifdef LIGHTRING_TRAIN_NCCL
  if (nccl_reducer_) nccl_reducer_->finish();
#endif
}

int Trainer::num_buckets() const {
#ifdef LIGHTRING_TRAIN_NCCL
  if (nccl_reducer_) return nccl_reducer_->num_buckets();
#endif
  return reducer_ ? reducer_->num_buckets() : 0;
}

std::vector<torch::Tensor> Trainer::replica_tensors() {
  std::vector<torch::Tensor> out = model_->parameters();
  for (const auto& p : model_->parameters()) {
    auto it = optimizer_->state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
    if (it == optimizer_->state().end()) continue;
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    out.push_back(s.exp_avg());
    out.push_back(s.exp_avg_sq());
  }
  return out;
}

void Trainer::train_step(int64_t step) {
  const auto t0 = Clock::now();
  g_activity = "training";
  LR_CHECK(step != fail_at_step_, "injected failure at step ", step, " (LIGHTRING_TRAIN_FAIL_AT)");
  const Batch batch = make_batch(loader_->next_batch(o_.batch), o_.sp, groups_.layout.sp_rank,
                                 documents_ ? &attention_ : nullptr, device_.device);
  // The global target count (the loss's denominator) and the stop request, agreed.
  double head[2] = {static_cast<double>(batch.count), g_stop_requested ? 1.0 : 0.0};
  all_reduce_sum(world_, head, 2, "the token count");
  const double tokens = std::max(head[0], 1.0);
  stop_ = head[1] > 0;

  const torch::Tensor logits = logits_of(model_, batch, attention_, o_.bf16, device_);
  const torch::Tensor local = loss_sum(logits, batch.targets);
  // The gradient buckets are summed over the world while backward runs (train_reduce.h,
  // train_nccl_reduce.h).
  reduce_begin();
  (local / tokens).backward();
  reduce_finish();
  double loss = local.item<double>();
  all_reduce_sum(world_, &loss, 1, "the loss");
  loss /= tokens;
  std::vector<torch::Tensor> params = model_->parameters();
  const double grad_norm = torch::nn::utils::clip_grad_norm_(
      params, o_.grad_clip > 0 ? o_.grad_clip : std::numeric_limits<double>::infinity());
  const double lr = learning_rate(o_, step - 1);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  optimizer_->step();
  optimizer_->zero_grad();
  synchronize(device_);  // the step time includes the GPU's queued work

  const double step_s = seconds_since(t0);
  train_seconds_ += step_s;
  if (!root_) return;
  const double global_tokens =
      static_cast<double>(groups_.layout.dp_size) * o_.batch * o_.data.seq_len;
  const double tps = global_tokens / step_s;
  const double mfu = o_.peak_tflops > 0
                         ? flops_per_token(config_) * tps / (o_.peak_tflops * 1e12 * world_.size())
                         : std::nan("");
  const double elapsed = seconds_since(start_);
  const double eta = train_seconds_ / (step - first_step_) * (o_.steps - step);
  JsonObject row;
  row.add("kind", "train").add("step", (long long)step).add("loss", loss).add("lr", lr);
  row.add("grad_norm", grad_norm).add("tokens", (long long)global_tokens);
  row.add("target_tokens", (long long)tokens).add("tokens_per_s", tps).add("mfu", mfu);
  row.add("step_s", step_s).add("elapsed_s", elapsed).add("max_rss_mb", max_rss_mb());
  const double peak_mb = peak_memory_mb(device_);
  row.add("peak_mem_mb", peak_mb).add("peak_mem_kind", peak_memory_kind(device_));
  log_->write(row);
  if (step % o_.log_every == 0 || step == first_step_ + 1 || step == o_.steps) {
    char line[256];
    std::snprintf(line, sizeof(line),
                  "step %6lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %s tok/s | mfu %s | "
                  "mem %.0f MB | %s | eta %s",
                  (long long)step, (long long)o_.steps, loss, lr, grad_norm,
                  format_count(tps).c_str(),
                  std::isfinite(mfu) ? (std::to_string(mfu * 100).substr(0, 4) + "%").c_str() : "-",
                  peak_mb, format_duration(elapsed).c_str(), format_duration(eta).c_str());
    std::cout << line << std::endl;
  }
}

void Trainer::evaluate(int64_t step) {
  data::SequenceSource* val = dataset_.validation.get();
  if (val == nullptr || o_.eval_sequences == 0) return;
  g_activity = "evaluating";
  torch::NoGradGuard no_grad;
  const uint64_t n = std::min<uint64_t>(o_.eval_sequences, val->sequences_per_epoch());
  const std::vector<uint64_t> mine =
      data::shard_indices(n, groups_.layout.dp_rank, groups_.layout.dp_size);
  // loss sum, targets, answers right, answers, answers right with the key elsewhere, those
  double stats[6] = {0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < mine.size(); i += o_.batch) {
    std::vector<data::Sequence> seqs(std::min<size_t>(o_.batch, mine.size() - i));
    for (size_t j = 0; j < seqs.size(); ++j) val->sequence(0, mine[i + j], seqs[j]);
    const Batch b = make_batch(seqs, o_.sp, groups_.layout.sp_rank,
                               documents_ ? &attention_ : nullptr, device_.device);
    const torch::Tensor logits = logits_of(model_, b, attention_, o_.bf16, device_);
    stats[0] += loss_sum(logits, b.targets).item<double>();
    stats[1] += static_cast<double>(b.count);
    const torch::Tensor pred = logits.argmax(-1).cpu(), targets = b.targets.cpu();
    for (size_t r = 0; r < b.answers.size(); ++r) {
      for (size_t a = 0; a < b.answers[r].size(); ++a) {
        const int64_t pos = b.answers[r][a];
        const bool right = pred[r][pos].item<int64_t>() == targets[r][pos].item<int64_t>();
        stats[2] += right;
        stats[3] += 1;
        if (b.key_elsewhere[r][a]) stats[4] += right, stats[5] += 1;
      }
    }
  }
  all_reduce_sum(world_, stats, 6, "the validation statistics");
  if (!root_) return;
  const double loss = stats[0] / std::max(stats[1], 1.0);
  JsonObject row;
  row.add("kind", "eval").add("step", (long long)step).add("eval_loss", loss);
  row.add("eval_tokens", (long long)stats[1]).add("eval_sequences", (long long)n);
  std::ostringstream line;
  line.precision(4);
  line << std::fixed << "eval   " << step << " | val loss " << loss;
  if (stats[3] > 0) {
    row.add("recall_acc", stats[2] / stats[3]);
    line << " | recall " << stats[2] / stats[3] << " (" << (long long)stats[3] << " queries)";
    if (stats[5] > 0) {
      row.add("recall_acc_other_shard", stats[4] / stats[5]);
      line << ", keys on an earlier shard " << stats[4] / stats[5] << " (" << (long long)stats[5]
           << ")";
    }
  }
  log_->write(row.add("elapsed_s", seconds_since(start_)));
  std::cout << line.str() << std::endl;
}

void Trainer::save(int64_t step) {
  if (o_.save_dir.empty()) return;
  g_activity = "saving a checkpoint";
  std::string error, file;
  if (root_) {
    try {
      CheckpointInfo info;
      info.step = step;
      info.position = loader_->position();
      info.data_format = o_.data.format;
      info.seq_len = o_.data.seq_len;
      info.seed = o_.seed;
      file = save_checkpoint(o_.save_dir, model_, *optimizer_, info);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_on_errors(world_, error, "lightring-train: --save-dir " + o_.save_dir);
  if (root_) std::cout << "saved " << file << std::endl;
}

// Rank 0 prints a sample: the prompt after the start-of-document token (EOS), bytes shown as
// text for byte-level data (other bytes escaped), token ids otherwise.
void Trainer::sample() {
  if (!root_ || o_.sample_tokens == 0) return;
  g_activity = "sampling";
  model_->to(torch::kCPU);  // the recurrent form runs on the CPU (csrc/model/generate.h)
  std::vector<int64_t> prompt = {dataset_.eos                           ? int64_t{*dataset_.eos}
                                 : o_.data.format == "synthetic-recall" ? data::kRecallBos
                                                                        : 0};
  for (const unsigned char c : o_.prompt) prompt.push_back(c);
  model::SamplingOptions so;
  so.num_tokens = o_.sample_tokens;
  so.temperature = o_.temperature;
  so.top_k = o_.top_k;
  so.seed = o_.seed;
  const std::vector<int64_t> tokens = model::generate(model_, prompt, so);
  const bool bytes = o_.data.format == "fortunes" || o_.data.format == "text";
  std::string text = o_.prompt;
  for (const int64_t t : tokens) {
    if (bytes && t == data::kByteEos) {
      text += "<|eos|>";
    } else if (bytes && (t >= 0x20 || t == '\n' || t == '\t')) {
      text += static_cast<char>(t);
    } else {
      text += (bytes ? "\\x" : " ") + std::to_string(t);
    }
  }
  std::cout << "sample (" << tokens.size() << " tokens, temperature " << o_.temperature
            << (o_.top_k ? ", top-k " + std::to_string(o_.top_k) : std::string()) << "):\n"
            << text << std::endl;
}

int Trainer::run() {
  setup();
  if (o_.generate_only) {
    sample();
    return 0;
  }
  const comm::GroupLayout& l = groups_.layout;
  if (root_) {
    std::cout << "lightring-train: " << model::describe(config_) << "\n  "
              << format_count(double(model::parameter_count(config_))) << " parameters ("
              << model::parameter_count(config_) << "; "
              << model::non_embedding_parameter_count(config_) << " without embedding and head)\n"
              << "  " << l.world_size << " ranks = --dp " << l.dp_size << " x --sp " << l.sp_size
              << " (" << world_.backend_name() << ", schedule "
              << parallel::schedule_name(o_.schedule) << ", timeout " << world_.timeout_s()
              << " s, gradients in " << num_buckets() << " all-reduce buckets, "
              << (o_.bf16 ? "bf16 autocast" : "fp32") << ", device " << device_.describe()
              << ")\n  data " << dataset_.description << ": " << o_.data.seq_len
              << " tokens per sequence (" << o_.data.seq_len / l.sp_size << "+ per SP rank), "
              << o_.batch << " per DP rank, " << int64_t{l.dp_size} * o_.batch * o_.data.seq_len
              << " tokens per step, "
              << (documents_                      ? "attention restarts at every document"
                  : dataset_.documents != nullptr ? "attention runs across documents"
                                                  : "one sample per sequence")
              << "\n  steps " << o_.steps << ", lr " << o_.lr << " (warmup " << o_.warmup
              << ", cosine to " << o_.min_lr << "), AdamW wd " << o_.weight_decay << ", clip "
              << o_.grad_clip << ", seed " << o_.seed << std::endl;
    JsonObject row;
    row.add("kind", "start")
        .add("step", (long long)first_step_)
        .add("config", model::describe(config_));
    row.add("parameters", (long long)model::parameter_count(config_));
    row.add("dp", l.dp_size).add("sp", l.sp_size).add("seq_len", (long long)o_.data.seq_len);
    row.add("batch", o_.batch).add("data", dataset_.description);
    row.add("documents", documents_ ? 1 : 0);
    row.add("flops_per_token", flops_per_token(config_));
    log_->write(row);
  }
  reset_peak_memory(device_);
  start_ = Clock::now();
  int64_t step = first_step_;
  while (step < o_.steps && !stop_) {
    ++step;
    train_step(step);
    const bool last = step == o_.steps;
    if (!last && !stop_ && o_.eval_every > 0 && step % o_.eval_every == 0) evaluate(step);
    if (!last && !stop_ && o_.save_every > 0 && step % o_.save_every == 0) save(step);
  }
  if (stop_ && root_) std::cout << "stop requested (SIGTERM/SIGINT): saving and exiting\n";
  if (!stop_) evaluate(step);
  save(step);
  if (!stop_) sample();
  if (root_)
    std::cout << "done: " << step << " steps in " << format_duration(seconds_since(start_))
              << std::endl;
  return 0;
}

}  // namespace

const char* train_activity() {
  return g_activity;
}

int run_training(const TrainOptions& options, comm::MpiCommunicator& world) {
  Trainer trainer(options, world);
  return trainer.run();
}

}  // namespace lightring::launch
