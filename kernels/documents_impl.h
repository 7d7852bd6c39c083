// Internals shared by kernels/documents.cpp (the piece loop) and kernels/documents_short.cpp
// (short pieces as one padded batch): runs of pieces, the side-stream fan-out, and the padded
// path.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/attention.h"
#include "kernels/backend.h"

namespace lightring::kernels::documents {

// Consecutive pieces [begin, end) that are one sub-problem.
struct Run {
  int64_t begin, end;
};

// Independent sub-problems: on the CUDA backend they run concurrently on side streams forked
// from p.stream (each piece alone is often too small to fill the GPU) and joined back into it
// by join() or the destructor; on the CPU, in order. next() is the stream of the next one.
class Fanout {
 public:
  Fanout(const Problem& p, size_t jobs) : stream_(p.stream) {
#ifdef LIGHTRING_WITH_CUDA
    if (p.device == Device::kCuda && jobs > 1) {
      n_ = static_cast<int>(std::min<size_t>(jobs, cuda::kMaxSideStreams));
      cuda::fork_streams(stream_, n_, side_);
    }
#else
    (void)jobs;
#endif
  }
  ~Fanout() {
    try {
      join();
    } catch (...) {  // an error is already on its way out
    }
  }
  Fanout(const Fanout&) = delete;
  Fanout& operator=(const Fanout&) = delete;
  void* next() {
    return n_ ? side_[next_++ % n_] : stream_;
  }
  void join() {
#ifdef LIGHTRING_WITH_CUDA
    if (n_) cuda::join_streams(stream_, n_);
#endif
    n_ = 0;
  }

 private:
  void* stream_;
  int n_ = 0, next_ = 0;
  void* side_[cuda::kMaxSideStreams] = {};
};

// Short pieces: a piece of at most kShortPiece tokens that is not in a run of at least
// kShortRun equal-length pieces runs in a front-padded batch of padded length
// round_up(length, kPadQuantum) with the other short pieces of that padded length (one batched
// sub-problem per padded length instead of one per piece). Front padding is exact when the
// pieces start from a zero state: zero keys and values before the first token leave the state
// at zero, the outputs at the padding rows are dropped, and the state after the last token is
// the piece's final state; so only calls without document initial states (and, backward,
// without their gradients) take this path.
constexpr int64_t kShortPiece = 256;
constexpr int64_t kShortRun = 8;
constexpr int64_t kPadQuantum = 64;

// Whether p may pad: the tuning (KernelTuning::pad_short_documents) and no document initial
// states (nor, backward, their gradients).
bool may_pad(const Problem& p, const float* doc_initial_states, const float* d_doc_initial_states);
// Removes the short pieces (above) from runs and returns their indices, when `allowed`.
std::vector<int64_t> take_short(const Documents& d, std::vector<Run>* runs, bool allowed);
// Runs the given pieces padded, one batched sub-problem per padded length, each on fan.next():
// forward writes o and (when p.doc_final_states) their document final states; backward writes
// dq, dk, dv, reading d_doc_final_states when given.
void forward_padded(const ForwardParams& p, const std::vector<int64_t>& pieces, Fanout* fan);
void backward_padded(const BackwardParams& p, const std::vector<int64_t>& pieces, Fanout* fan);
// The number of padded batches forward_padded / backward_padded make of `pieces`.
size_t padded_batches(const Documents& d, const std::vector<int64_t>& pieces);

}  // namespace lightring::kernels::documents
