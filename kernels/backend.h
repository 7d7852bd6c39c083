// Backend entry points behind kernels/attention.h. Callers use attention.h;
// these receive params that validate() has already accepted, with block_size
// resolved (never 0).
#pragma once

#include <memory>

#include "kernels/attention.h"

namespace lightring::kernels {

// What a backend implements behind ForwardPass / BackwardPass. The constructor
// of the implementation is phase 1; finish() is called at most once.
class ForwardPass::Impl {
 public:
  virtual ~Impl() = default;
  virtual const float* local_state() = 0;
  virtual void finish(const float* initial_state, float* final_state) = 0;
};

class BackwardPass::Impl {
 public:
  virtual ~Impl() = default;
  virtual const float* local_state() = 0;
  virtual void finish(const float* d_final_state, float* d_initial_state) = 0;
};

// Throws lightring::Error naming the first bad field.
void validate(const ForwardParams& p);
void validate(const BackwardParams& p);
void validate(const StateParams& p);

// Packed documents on any backend (kernels/documents.cpp): p.docs enabled.
namespace documents {
void forward(const ForwardParams& p);
void backward(const BackwardParams& p);
std::unique_ptr<ForwardPass::Impl> forward_pass(const ForwardParams& p);
std::unique_ptr<BackwardPass::Impl> backward_pass(const BackwardParams& p);
}  // namespace documents

namespace cpu {
void forward(const ForwardParams& p);
void backward(const BackwardParams& p);
void local_state(const StateParams& p);
std::unique_ptr<ForwardPass::Impl> forward_pass(const ForwardParams& p);
std::unique_ptr<BackwardPass::Impl> backward_pass(const BackwardParams& p);
constexpr int kDefaultBlockSize = 64;
}  // namespace cpu

namespace cuda {
// Defined in kernels/cuda/ when LIGHTRING_WITH_CUDA; otherwise never called.
void forward(const ForwardParams& p);
void backward(const BackwardParams& p);
void local_state(const StateParams& p);
std::unique_ptr<ForwardPass::Impl> forward_pass(const ForwardParams& p);
std::unique_ptr<BackwardPass::Impl> backward_pass(const BackwardParams& p);
int default_block_size(int64_t qk_dim, int64_t v_dim);
bool available();
// Whether the entry points above run p's packed documents themselves, every boundary inside the
// scans' chunk loops (kernels/cuda/doc_chunks.h; KernelTuning::documents_path); otherwise
// kernels/documents.cpp runs them piece by piece.
bool runs_documents(const ForwardParams& p);
bool runs_documents(const BackwardParams& p);
DecayDigest decay_digest(const Problem& p);
// Side streams (kernels/cuda/streams.cu): fork_streams makes n <= kMaxSideStreams side streams
// wait for the work enqueued so far on `stream` and returns them in side[0..n); join_streams
// makes `stream` wait for everything enqueued on them since. One fork and one join at a time
// per host thread.
constexpr int kMaxSideStreams = 8;
void fork_streams(void* stream, int n, void** side);
void join_streams(void* stream, int n);
}  // namespace cuda

}  // namespace lightring::kernels
