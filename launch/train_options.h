// Command line of lightring-train (docs/training.md lists every flag).
#pragma once

#include <cstdint>
#include <string>

#include "csrc/data/dataset.h"
#include "csrc/model/config.h"
#include "parallel/sequence_parallel.h"

namespace lightring::launch {

struct TrainOptions {
  // Model: a preset, then any size overridden by a flag (0: the preset's).
  std::string preset = "tiny";
  int64_t d_model = 0, layers = 0, heads = 0, head_dim = 0, ffn_dim = 0;
  int64_t vocab = 0;  // 0: the data's vocabulary
  bool embedding_scale = true;
  double init_std = 0.02;

  // Parallelism: dp · sp = world size (dp 0: world / sp).
  int dp = 0, sp = 1;
  bool sp_across_nodes = false;  // --sp-across-nodes: an SP group may span nodes
  parallel::Schedule schedule = parallel::Schedule::kAuto;
  double timeout_s = 0.0;       // --timeout; 0: LIGHTRING_COMM_TIMEOUT_S or the default
  int threads = 1;              // torch intra-op threads per rank
  double bucket_mb = 25;        // gradient all-reduce bucket size (MB); 0: one bucket
  bool bf16 = false;            // --precision bf16: forward/backward under autocast, fp32 master
  std::string device = "auto";  // --device cpu | cuda | auto (launch/train_device.h)

  // Data.
  data::DataOptions data;  // format, path, seq_len, seed, split, recall sizes
  int batch = 4;           // sequences per DP rank per step
  bool documents = true;   // attention restarts at document boundaries (document formats)

  // Optimisation: AdamW, linear warmup then cosine decay to min_lr.
  int64_t steps = 200;
  double lr = 3e-3, min_lr = 3e-4;
  int64_t warmup = 20;
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, adam_eps = 1e-8;
  double grad_clip = 1.0;  // max global grad norm; 0: no clipping
  uint64_t seed = 1234;

  // Checkpoints.
  std::string save_dir;    // empty: no checkpoints
  int64_t save_every = 0;  // 0: only at the end (and on SIGTERM/SIGINT)
  std::string resume;      // a checkpoint file, or a --save-dir (its 'latest')

  // Reporting.
  std::string log_path;         // JSONL, one object per step (rank 0)
  int64_t log_every = 10;       // progress line period on stdout
  int64_t eval_every = 0;       // 0: validation only at the end
  int64_t eval_sequences = 16;  // validation sequences per evaluation (all DP ranks together)
  double peak_tflops = 0.0;     // per rank, for MFU; 0: MFU not reported

  // Samples (rank 0, the recurrent form of csrc/model/generate.h).
  int64_t sample_tokens = 0;   // --sample: tokens printed after training; 0: none
  bool generate_only = false;  // --generate: load --resume, print a sample, exit (no training)
  std::string prompt;          // byte-level data: the text after the start-of-document EOS
  double temperature = 0.8;
  int64_t top_k = 0;

  // The model config these flags give (vocab from the data when --vocab is 0).
  model::ModelConfig model_config(uint32_t data_vocab) const;
};

// Parses argv; returns false after printing --help (when print_help). Throws lightring::Error
// naming the flag on a bad value. dp·sp against the world size is checked by check_world.
bool parse_train_options(int argc, char** argv, bool print_help, TrainOptions* out);

// "--dp 2 x --sp 2 = 4 ranks, but mpirun started 3": throws unless dp·sp == world_size
// (dp 0 is resolved to world_size / sp first).
void check_world(TrainOptions* options, int world_size);

// One "name value" line per option that must agree on every rank.
std::string canonical_options(const TrainOptions& options);

// lr of step s = 0, 1, …: linear warmup to lr over `warmup` steps, then cosine to min_lr at
// `steps`.
double learning_rate(const TrainOptions& options, int64_t step);

}  // namespace lightring::launch
