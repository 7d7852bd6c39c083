// lightring-train checkpoints (docs/training.md, "Checkpoints").
//
// A checkpoint is one file, <save-dir>/ckpt-<step, 8 digits>.pt, written by torch::pickle_save:
// the zip format of torch.save, so Python reads it with torch.load(path). It holds one dict:
//
//   format     "lightring-train/1"
//   step       completed optimizer steps (int)
//   config     the model config: preset, vocab_size, d_model, num_layers, num_heads, head_dim,
//              ffn_dim (resolved), scale_embedding, norm_eps, init_std
//   model      {parameter name: tensor} (names of csrc/model/transnormer.h), fp32
//   optimizer  {parameter name: {step, exp_avg, exp_avg_sq}} (libtorch AdamW state)
//   data       {format, seq_len, seed, epoch, sequence}: the next batch's data::Position
//   rng        torch's default CPU generator state (uint8 tensor)
//
// Writing is atomic: the bytes go to a hidden temporary file in the same folder, are fsync'ed,
// and the file is renamed to its final name only when complete; then <save-dir>/latest (the
// file name of the newest checkpoint) is replaced the same way. A reader therefore never sees
// a partial checkpoint under a final name.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "csrc/data/loader.h"
#include "csrc/model/transnormer.h"

namespace lightring::launch {

struct CheckpointInfo {
  int64_t step = 0;
  data::Position position;
  std::string data_format;
  int64_t seq_len = 0;
  uint64_t seed = 0;
};

// Writes <dir>/ckpt-<step>.pt atomically and points <dir>/latest at it; returns its path.
// Creates dir if needed. Throws lightring::Error naming the file on any I/O failure (the
// temporary file is removed; nothing else changes).
std::string save_checkpoint(const std::string& dir, model::TransNormerLM& model,
                            torch::optim::AdamW& optimizer, const CheckpointInfo& info);

// Creates dir if needed and checks that a file can be written there (and removes it); throws
// naming --save-dir otherwise.
void check_save_dir(const std::string& dir);

// A checkpoint file as given, or the file <dir>/latest names when `path` is a folder. Throws
// naming the path when neither exists.
std::string resolve_checkpoint(const std::string& path);

// Reads `file` into model and optimizer (whose parameters are model's) and torch's generator;
// returns its step and data position. Throws lightring::Error naming the file and what is wrong
// (unreadable or truncated, not a lightring-train checkpoint, a model config or data format
// that differs from this run: every difference listed) before changing anything.
CheckpointInfo load_checkpoint(const std::string& file, model::TransNormerLM& model,
                               torch::optim::AdamW& optimizer, const CheckpointInfo& expected);

}  // namespace lightring::launch
