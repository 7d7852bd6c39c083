// Host-side pieces shared by the CUDA entry points (kernels/cuda/attention.cu):
// the segment plan of docs/algorithm.md §3 inside one GPU, the scan views of
// the inputs, stream-ordered workspaces, and the segment-state operations
// around the scan (kernels/cuda/backend.cu, kernels/cuda/combine.cu).
//
// Segment-state arrays are [B·H, G, dk, dv] fp32; user states are [B, H, D, E]
// fp32 (docs/algorithm.md); StateRef (scan.h) describes either to the scan.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "kernels/attention.h"
#include "kernels/cuda/scan.h"

namespace lightring::kernels::cuda {

// Lets the memory pool that cudaMallocAsync draws from on the current device keep what is freed
// (release threshold = max). With the default threshold (0) every synchronisation returns the
// workspaces' memory to the driver and the next call maps it again (measured in
// bench/NOTES.md). The pool then holds the largest workspace set of the process
// (B·H·G·D·E·4 bytes per workspace).
// Once per device; KernelTuning::pool_release leaves the threshold as it is.
void retain_pool_memory();

// Stream-ordered fp32 scratch (cudaMallocAsync), freed on the same stream.
class Workspace {
 public:
  Workspace() = default;
  Workspace(size_t count, cudaStream_t stream) : stream_(stream) {
    retain_pool_memory();
    if (count)
      LR_CUDA_CHECK(
          cudaMallocAsync(reinterpret_cast<void**>(&ptr_), count * sizeof(float), stream));
  }
  ~Workspace() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  float* get() const { return ptr_; }

 private:
  float* ptr_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

inline Operand operand(const void* ptr, const Strides& s) {
  return Operand{ptr, s.batch, s.head, s.seq};
}

// Points the scan's output at `o`, a view of a tensor the caller owns mutably.
inline void set_output(ScanParams* s, const Operand& o) {
  s->o = const_cast<void*>(o.ptr);
  s->o_sb = o.sb;
  s->o_sh = o.sh;
  s->o_st = o.st;
}

// The view t' = N-1-t of an operand.
inline Operand reversed(Operand x, int64_t seqlen, DType dtype) {
  x.ptr = static_cast<const char*>(x.ptr) +
          (seqlen - 1) * x.st * static_cast<int64_t>(dtype_size(dtype));
  x.st = -x.st;
  return x;
}

struct SegmentPlan {
  int64_t seg_len = 0;
  int num_segs = 1;
};

// G segments of seg_len rows (a multiple of 64) for a problem whose widest
// scan has max_dv value columns (backend.cu).
SegmentPlan plan_segments(const Problem& p, int max_dv);

// Copies the decay rates to the host and checks them (finite, >= 0), which synchronises
// `stream`; skipped while `stream` is being captured. By default only the first time a (device,
// pointer, H) is seen, so that steady-state calls never wait for the GPU (a decay array changed
// in place later is not re-read); KernelTuning::check_decay_every_call: every call.
void check_decay(const Problem& p, cudaStream_t stream);

// Non-blocking streams per device (created once, never destroyed) for work that a pass runs
// beside its own stream (CudaBackwardPass: dQ at the default priority while the pair, on the
// high-priority one, is computed and exchanged).
cudaStream_t side_stream(bool high_priority);

// A timing-disabled CUDA event of the current device from a per-device pool (created on first
// use, never destroyed), returned by the destructor: a pass's fork/join events cost no
// cudaEventCreate/Destroy per call. Re-recording a returned event is safe: a stream that waits
// on it waited on the record made before the wait was enqueued.
class PooledEvent {
 public:
  PooledEvent();
  ~PooledEvent();
  PooledEvent(const PooledEvent&) = delete;
  PooledEvent& operator=(const PooledEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  int device_ = 0;
  cudaEvent_t event_ = nullptr;
};

// Forgets which decay arrays were checked (tests: a freed array's address may come back).
void forget_checked_decay();

// Scan params with the problem's sizes, decay and segment plan; views unset.
ScanParams base_params(const Problem& p, const SegmentPlan& plan);

// [B·H, G, dk, dv] contiguous workspace; transposed: element (i, j) is X[j][i] of a [dv][dk] array.
StateRef segment_states(float* ws, int num_segs, int dk, int dv, bool transposed = false);

// A user state [B, H, rows, cols] seen as the kernel's [dk = rows][dv = cols]; transposed: a user
// state [B, H, cols, rows] seen as [dk = rows][dv = cols] (element (i, j) is X[j][i]).
StateRef user_state(const float* s, int64_t rows, int64_t cols, bool transposed = false);

// Local pairs of every segment of a view (o == nullptr), combined in place into entering
// states; final_out (may be null) receives the state after the whole view.
void prefix_states(ScanParams sp, float* ws, const float* init, float* final_out,
                   cudaStream_t stream);

// Adds an entering state that arrived after prefix_states ran from a zero init
// (docs/algorithm.md §3; combine.cu): with the view cut into segments of
// seg_len rows, segment g starts offset(g) = g·seg_len rows after s0, so
//
//     ws[g] <- ws[g] + λ^{g·seg_len}·s0           (g = 0..G-1)
//     final_out <- λ^N·s0 + local_final           (final_out may be null)
//
// ws is [B·H, G, D, E] contiguous (G segments of plan.seg_len rows of p); s0,
// local_final and final_out are [B·H, D, E]. For a reversed view (backward dS)
// the offsets count from the end of the shard, which is what the reversed
// segments are. λ^n = exp(-s·n) is formed directly, never from a negative power.
// With documents (segs: the view's DocSegment table) the offsets are the segments' rows and s0
// stops after the first segment in which a document starts; final_out is then local_final.
void seed_segments(float* ws, const Problem& p, const SegmentPlan& plan, const float* s0,
                   const float* local_final, float* final_out, cudaStream_t stream,
                   const DocSegment* segs = nullptr);

}  // namespace lightring::kernels::cuda
