// Parsing and validation of lightring-train's command line (launch/train_options.h).
#include "launch/train_options.h"

#include <boost/program_options.hpp>
#include <cmath>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "launch/cli_parse.h"

namespace po = boost::program_options;

namespace lightring::launch {

model::ModelConfig TrainOptions::model_config(uint32_t data_vocab) const {
  model::ModelConfig c = model::preset_config(preset);
  const bool custom = d_model || layers || heads || head_dim || ffn_dim;
  if (d_model) c.d_model = d_model;
  if (layers) c.num_layers = layers;
  if (heads) c.num_heads = heads;
  if (head_dim) c.head_dim = head_dim;
  if (ffn_dim) c.ffn_dim = ffn_dim;
  if (custom) c.preset = preset + "+custom";
  c.vocab_size = vocab > 0 ? vocab : data_vocab;
  c.scale_embedding = embedding_scale;
  c.init_std = init_std;
  return c;
}

namespace {

data::TextSplit parse_text_split(const std::string& s) {
  if (s == "file") return data::TextSplit::kFile;
  if (s == "block") return data::TextSplit::kBlock;
  LR_THROW("--text-split must be file or block (got '", s, "')");
}

data::TokenDtype parse_token_dtype(const std::string& s) {
  if (s == "uint16") return data::TokenDtype::kUint16;
  if (s == "uint32") return data::TokenDtype::kUint32;
  LR_THROW("--token-dtype must be uint16 or uint32 (got '", s, "')");
}

void check_format(const std::string& f) {
  for (const char* known : {"synthetic-recall", "fortunes", "text", "tokens", "megatron"}) {
    if (f == known) return;
  }
  LR_THROW("--data: unknown format '", f, "' (known: ", data::known_formats(), ")");
}

}  // namespace

bool parse_train_options(int argc, char** argv, bool print_help, TrainOptions* out) {
  TrainOptions& o = *out;
  std::string schedule = "auto", text_split = "file", token_dtype = "uint16", documents = "on";
  std::string precision = "fp32";
  int64_t eos = -1, recall_keys = 64, recall_pairs = 16, recall_queries = 16;
  double val_fraction = 0.01;
  bool no_embedding_scale = false;
  po::options_description desc(
      "lightring-train: pretrain a TransNormerLLM model over data x sequence parallel ranks\n"
      "  mpirun -np P lightring-train --dp D --sp S [options]   (P = D*S; docs/training.md)\n\n"
      "Options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help")
    // model
    ("preset", po::value(&o.preset)->default_value("tiny"),
     "model size: tiny (d 64, L 2, H 4: CPU), 125m (d 768, L 12, H 12), 350m (d 1024, L 24, H 16), "
     "1b (d 2048, L 24, H 16)")
    ("d-model", po::value(&o.d_model), "model width d (default: the preset's)")
    ("layers", po::value(&o.layers), "layers L (default: the preset's)")
    ("heads", po::value(&o.heads), "attention heads H (default: the preset's)")
    ("head-dim", po::value(&o.head_dim), "head dim dh, 1..256 (default: d / H)")
    ("ffn-dim", po::value(&o.ffn_dim), "SGLU hidden size (default: the preset's, or 8d/3 rounded up to 64)")
    ("vocab", po::value(&o.vocab),
     "vocabulary size (default: the data's; must hold every token id of the data)")
    ("no-embedding-scale", po::bool_switch(&no_embedding_scale), "do not scale embeddings by sqrt(d)")
    ("init-std", po::value(&o.init_std)->default_value(0.02), "std of the normal init of every weight")
    // parallelism
    ("dp", po::value(&o.dp)->default_value(0), "data-parallel size D (0: ranks / --sp)")
    ("sp", po::value(&o.sp)->default_value(1),
     "sequence-parallel size S: S consecutive ranks hold one sequence, split along its length; "
     "each SP group must lie on one node")
    ("sp-across-nodes", po::bool_switch(&o.sp_across_nodes),
     "let an SP group span nodes (its ring hops between nodes then use the inter-node link)")
    ("schedule", po::value(&schedule)->default_value("auto"),
     "state exchange of the SP group: ring | allgather | scan | auto")
    ("timeout", po::value(&o.timeout_s),
     "seconds a rank waits for a peer before failing (default: LIGHTRING_COMM_TIMEOUT_S, else 300)")
    ("threads", po::value(&o.threads)->default_value(1), "torch threads per rank")
    ("precision", po::value(&precision)->default_value("fp32"),
     "fp32 | bf16: forward and backward under torch autocast in bf16 (matmuls, the attention "
     "kernels), weights, gradients and AdamW state in fp32")
    ("device", po::value(&o.device)->default_value("auto"),
     "cpu | cuda (one GPU per rank: cuda:<local rank>) | auto (cuda when this build has CUDA "
     "and a GPU is visible, else cpu)")
    ("bucket-mb", po::value(&o.bucket_mb)->default_value(25.0),
     "gradient all-reduce buckets of this many MB, each started as soon as backward has "
     "produced its gradients (0: one bucket)")
    // data
    ("data", po::value(&o.data.format)->default_value("synthetic-recall"),
     "dataset: synthetic-recall (generated) | fortunes (Debian's fortunes) | text (files or a "
     "folder, byte-level) | tokens (uint16/uint32 token files) | megatron (PREFIX.bin + PREFIX.idx)")
    ("data-path", po::value(&o.data.path),
     "file, folder or Megatron prefix of --data (fortunes: /usr/share/games/fortunes)")
    ("seq-len", po::value(&o.data.seq_len)->default_value(256),
     "tokens per sequence (global: split over the --sp ranks)")
    ("batch", po::value(&o.batch)->default_value(4), "sequences per DP rank per step")
    ("documents", po::value(&documents)->default_value("on"),
     "on: the attention state restarts at every document boundary of a packed sequence (each "
     "row runs alone); off: it flows across documents (document formats; synthetic-recall has "
     "one sample per sequence)")
    ("text-split", po::value(&text_split)->default_value("file"),
     "--data text: one document per file | per blank-line-separated block")
    ("token-dtype", po::value(&token_dtype)->default_value("uint16"),
     "--data tokens: uint16 | uint32 (files with an llm.c header say their own)")
    ("eos", po::value(&eos), "--data tokens: the EOS id between documents (required); megatron: "
     "an id appended after each document")
    ("val-fraction", po::value(&val_fraction)->default_value(0.01),
     "documents held out for validation (document formats)")
    ("recall-keys", po::value(&recall_keys)->default_value(64),
     "synthetic-recall: key (and value) vocabulary")
    ("recall-pairs", po::value(&recall_pairs)->default_value(16),
     "synthetic-recall: key/value pairs per sequence")
    ("recall-queries", po::value(&recall_queries)->default_value(16),
     "synthetic-recall: queries per sequence (<= pairs)")
    // optimisation
    ("steps", po::value(&o.steps)->default_value(200), "optimizer steps")
    ("lr", po::value(&o.lr)->default_value(3e-3), "peak learning rate")
    ("min-lr", po::value(&o.min_lr)->default_value(3e-4), "learning rate at the end of the cosine")
    ("warmup", po::value(&o.warmup)->default_value(20), "linear warmup steps")
    ("weight-decay", po::value(&o.weight_decay)->default_value(0.1), "AdamW weight decay")
    ("beta1", po::value(&o.beta1)->default_value(0.9), "AdamW beta1")
    ("beta2", po::value(&o.beta2)->default_value(0.95), "AdamW beta2")
    ("adam-eps", po::value(&o.adam_eps)->default_value(1e-8), "AdamW epsilon")
    ("grad-clip", po::value(&o.grad_clip)->default_value(1.0),
     "clip the global gradient norm to this (0: off)")
    ("seed", po::value(&o.seed)->default_value(1234), "seed of the weights and the data order")
    // checkpoints
    ("save-dir", po::value(&o.save_dir), "checkpoint folder (ckpt-<step>.pt and 'latest')")
    ("save-every", po::value(&o.save_every)->default_value(0),
     "checkpoint every N steps (0: only at the end and on SIGTERM/SIGINT)")
    ("resume", po::value(&o.resume), "continue from a checkpoint file, or a --save-dir's latest")
    // reporting
    ("log", po::value(&o.log_path), "JSONL log: one JSON object per step (rank 0)")
    ("log-every", po::value(&o.log_every)->default_value(10), "progress line every N steps")
    ("eval-every", po::value(&o.eval_every)->default_value(0),
     "validation loss every N steps (0: only at the end)")
    ("eval-sequences", po::value(&o.eval_sequences)->default_value(16),
     "held-out sequences per evaluation (over all DP ranks)")
    ("peak-tflops", po::value(&o.peak_tflops)->default_value(0.0),
     "peak dense TFLOP/s of one rank's device, for MFU (0: MFU not reported)")
    // samples
    ("sample", po::value(&o.sample_tokens)->default_value(0),
     "print a sample of N tokens from the model after training (rank 0; recurrent form)")
    ("generate", po::bool_switch(&o.generate_only),
     "only sample from the --resume checkpoint (--sample tokens, default 200), no training")
    ("prompt", po::value(&o.prompt), "text the sample continues (byte-level data: fortunes, text)")
    ("temperature", po::value(&o.temperature)->default_value(0.8), "sampling temperature (0: greedy)")
    ("top-k", po::value(&o.top_k)->default_value(0), "sample among the k likeliest tokens (0: all)");
  // clang-format on
  po::variables_map vm;
  if (!parse_command_line(desc, argc, argv, "lightring-train", print_help, &vm)) return false;
  model::preset_config(o.preset);  // unknown preset: names the known ones
  for (auto [flag, value] : {std::pair<const char*, int64_t>{"--d-model", o.d_model},
                             {"--layers", o.layers},
                             {"--heads", o.heads},
                             {"--head-dim", o.head_dim},
                             {"--ffn-dim", o.ffn_dim},
                             {"--vocab", o.vocab}}) {
    LR_CHECK(vm.count(flag + 2) == 0 || value >= 1, flag, " must be >= 1 (got ", value, ")");
  }
  o.embedding_scale = !no_embedding_scale;
  LR_CHECK(o.init_std > 0 && std::isfinite(o.init_std), "--init-std must be > 0 (got ", o.init_std,
           ")");
  LR_CHECK(o.dp >= 0, "--dp must be >= 1, or 0 for ranks / --sp (got ", o.dp, ")");
  LR_CHECK(o.sp >= 1, "--sp must be >= 1 (got ", o.sp, ")");
  o.schedule = parallel::parse_schedule(schedule);
  LR_CHECK(vm.count("timeout") == 0 || (o.timeout_s > 0 && std::isfinite(o.timeout_s)),
           "--timeout must be a positive number of seconds (got ", o.timeout_s, ")");
  LR_CHECK(o.threads >= 1, "--threads must be >= 1 (got ", o.threads, ")");
  LR_CHECK(precision == "fp32" || precision == "bf16", "--precision must be fp32 or bf16 (got '",
           precision, "')");
  o.bf16 = precision == "bf16";
  LR_CHECK(o.device == "cpu" || o.device == "cuda" || o.device == "auto",
           "--device must be cpu, cuda or auto (got '", o.device, "')");
  LR_CHECK(o.bucket_mb >= 0 && std::isfinite(o.bucket_mb), "--bucket-mb must be >= 0 (got ",
           o.bucket_mb, ")");

  check_format(o.data.format);
  const bool needs_path =
      o.data.format == "text" || o.data.format == "tokens" || o.data.format == "megatron";
  LR_CHECK(!needs_path || !o.data.path.empty(), "--data-path is required for --data ",
           o.data.format);
  LR_CHECK(o.data.format != "synthetic-recall" || o.data.path.empty(),
           "--data-path: synthetic-recall reads no files (got '", o.data.path, "')");
  LR_CHECK(o.data.seq_len >= 2, "--seq-len must be >= 2 (got ", o.data.seq_len, ")");
  LR_CHECK(o.data.seq_len >= o.sp, "--seq-len (", o.data.seq_len, ") must be at least --sp (", o.sp,
           "): every SP rank holds >= 1 token");
  LR_CHECK(o.batch >= 1, "--batch must be >= 1 (got ", o.batch, ")");
  LR_CHECK(documents == "on" || documents == "off", "--documents must be on or off (got '",
           documents, "')");
  o.documents = documents == "on";
  o.data.seed = o.seed;
  o.data.text_split = parse_text_split(text_split);
  o.data.token_dtype = parse_token_dtype(token_dtype);
  if (vm.count("eos")) {
    LR_CHECK(eos >= 0 && eos <= 0xffffffffLL, "--eos must be a token id >= 0 (got ", eos, ")");
    o.data.eos = static_cast<data::Token>(eos);
  }
  LR_CHECK(o.data.format != "tokens" || o.data.eos.has_value(),
           "--eos is required for --data tokens (the id that separates documents)");
  LR_CHECK(val_fraction >= 0 && val_fraction < 1, "--val-fraction must be in [0, 1) (got ",
           val_fraction, ")");
  o.data.validation = data::ValidationSpec{val_fraction, 0};
  if (o.vocab > 0) o.data.vocab_size = static_cast<uint32_t>(o.vocab);
  LR_CHECK(recall_keys >= 1 && recall_keys <= 1 << 20, "--recall-keys must be in 1..2^20 (got ",
           recall_keys, ")");
  LR_CHECK(recall_pairs >= 1, "--recall-pairs must be >= 1 (got ", recall_pairs, ")");
  LR_CHECK(recall_queries >= 1 && recall_queries <= recall_pairs,
           "--recall-queries must be in 1..--recall-pairs (got ", recall_queries, ")");
  o.data.recall.num_keys = o.data.recall.num_values = static_cast<int32_t>(recall_keys);
  o.data.recall.num_pairs = static_cast<int32_t>(recall_pairs);
  o.data.recall.num_queries = static_cast<int32_t>(recall_queries);

  LR_CHECK(o.steps >= 1, "--steps must be >= 1 (got ", o.steps, ")");
  LR_CHECK(o.lr > 0 && std::isfinite(o.lr), "--lr must be > 0 (got ", o.lr, ")");
  LR_CHECK(o.min_lr >= 0 && o.min_lr <= o.lr, "--min-lr must be in [0, --lr] (got ", o.min_lr, ")");
  LR_CHECK(o.warmup >= 0, "--warmup must be >= 0 (got ", o.warmup, ")");
  LR_CHECK(o.weight_decay >= 0, "--weight-decay must be >= 0 (got ", o.weight_decay, ")");
  LR_CHECK(o.beta1 >= 0 && o.beta1 < 1, "--beta1 must be in [0, 1) (got ", o.beta1, ")");
  LR_CHECK(o.beta2 >= 0 && o.beta2 < 1, "--beta2 must be in [0, 1) (got ", o.beta2, ")");
  LR_CHECK(o.adam_eps > 0, "--adam-eps must be > 0 (got ", o.adam_eps, ")");
  LR_CHECK(o.grad_clip >= 0, "--grad-clip must be >= 0 (got ", o.grad_clip, ")");
  LR_CHECK(o.save_every >= 0, "--save-every must be >= 0 (got ", o.save_every, ")");
  LR_CHECK(o.save_every == 0 || !o.save_dir.empty(), "--save-every needs --save-dir");
  LR_CHECK(o.log_every >= 1, "--log-every must be >= 1 (got ", o.log_every, ")");
  LR_CHECK(o.eval_every >= 0, "--eval-every must be >= 0 (got ", o.eval_every, ")");
  LR_CHECK(o.eval_sequences >= 0, "--eval-sequences must be >= 0 (got ", o.eval_sequences, ")");
  LR_CHECK(o.peak_tflops >= 0, "--peak-tflops must be >= 0 (got ", o.peak_tflops, ")");
  LR_CHECK(o.sample_tokens >= 0, "--sample must be >= 0 (got ", o.sample_tokens, ")");
  LR_CHECK(!o.generate_only || !o.resume.empty(), "--generate needs --resume (the checkpoint)");
  if (o.generate_only && o.sample_tokens == 0) o.sample_tokens = 200;
  LR_CHECK(o.temperature >= 0 && std::isfinite(o.temperature), "--temperature must be >= 0 (got ",
           o.temperature, ")");
  LR_CHECK(o.top_k >= 0, "--top-k must be >= 0 (got ", o.top_k, ")");
  LR_CHECK(o.prompt.empty() || o.data.format == "fortunes" || o.data.format == "text",
           "--prompt needs byte-level data (--data fortunes or text), not ", o.data.format);
  // The sizes themselves (head dim limits, divisibility) are checked once the vocabulary is
  // known; check them now with a stand-in vocabulary so that a bad size fails before any data.
  model::validate(o.model_config(2));
  return true;
}

void check_world(TrainOptions* o, int world_size) {
  LR_CHECK(world_size % o->sp == 0 || o->dp != 0, "--sp ", o->sp,
           " does not divide the number of ranks (", world_size, ")");
  if (o->dp == 0) o->dp = world_size / o->sp;
  LR_CHECK(int64_t{o->dp} * o->sp == world_size, "--dp ", o->dp, " x --sp ", o->sp, " = ",
           int64_t{o->dp} * o->sp, " ranks, but the job has ", world_size,
           " (mpirun -np must be --dp x --sp)");
}

std::string canonical_options(const TrainOptions& o) {
  std::ostringstream os;
  os.precision(17);
  const model::ModelConfig c = o.model_config(0);
  os << "model " << model::describe(c) << " init_std=" << c.init_std << "\n"
     << "parallel dp=" << o.dp << " sp=" << o.sp << " sp_across_nodes=" << o.sp_across_nodes
     << " schedule=" << parallel::schedule_name(o.schedule) << " bf16=" << o.bf16
     << " device=" << o.device << "\n"
     << "data " << o.data.format << " path=" << o.data.path << " seq_len=" << o.data.seq_len
     << " batch=" << o.batch << " documents=" << o.documents
     << " val=" << o.data.validation.fraction << "\n"
     << "optim steps=" << o.steps << " lr=" << o.lr << " min_lr=" << o.min_lr
     << " warmup=" << o.warmup << " wd=" << o.weight_decay << " betas=" << o.beta1 << "," << o.beta2
     << " eps=" << o.adam_eps << " clip=" << o.grad_clip << " seed=" << o.seed << "\n"
     << "checkpoints dir=" << o.save_dir << " every=" << o.save_every << " resume=" << o.resume
     << "\n"
     << "eval every=" << o.eval_every << " sequences=" << o.eval_sequences << "\n";
  return os.str();
}

double learning_rate(const TrainOptions& o, int64_t step) {
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const int64_t span = std::max<int64_t>(1, o.steps - o.warmup);
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup) / span);
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace lightring::launch
