// The local Lightning Attention-2 computation: the public kernels/ API.
//
// Per batch element b and head h (docs/algorithm.md §1), with λ = exp(-s_h):
//
//     S_t = λ·S_{t-1} + k_tᵀ v_t          (S_{-1} = S0, fp32 d×e)
//     o_t = c · q_t S_t
//
// computed in the block form of §2. Everything here is rank-, torch- and
// Python-free: callers fill a params struct and call an entry point, which
// validates the struct and throws lightring::Error on bad input.
//
// Layout: q, k are [B, H, N, D]; v, o are [B, H, N, E]; gradients match their
// tensors. Strides are in elements, not bytes, as {batch, head, seq}; the last
// dim is contiguous. [B, N, H, D] tensors are described by strides alone.
// States (initial, final and their gradients) are [B, H, D, E] fp32 contiguous.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "kernels/documents.h"

namespace lightring::kernels {

// The element type is core's (core/dtype.h); the kernels API names it too.
using ::lightring::DType;
using ::lightring::dtype_name;
using ::lightring::dtype_size;
using ::lightring::parse_dtype;

enum class Device { kCpu, kCuda };

const char* device_name(Device d);

// Strides in elements of a [B, H, N, *] tensor; the innermost dim has stride 1.
struct Strides {
  int64_t batch = 0;
  int64_t head = 0;
  int64_t seq = 0;
};

// Contiguous [B, H, N, dim] strides.
Strides contiguous_bhnd(int64_t heads, int64_t seqlen, int64_t dim);
// Contiguous [B, N, H, dim] strides (the FLA / model-code layout).
Strides contiguous_bnhd(int64_t heads, int64_t seqlen, int64_t dim);

// Fields shared by every entry point.
struct Problem {
  Device device = Device::kCpu;
  DType dtype = DType::kFloat32;
  int64_t batch = 0;             // B
  int64_t heads = 0;             // H
  int64_t seqlen = 0;            // N, the (local) sequence length; any N >= 1
  int64_t qk_dim = 0;            // D, 1..256
  int64_t v_dim = 0;             // E, 1..256
  const float* decay = nullptr;  // [H] fp32, s_h >= 0, λ_h = exp(-s_h); nullptr means s = 0
  float scale = 1.0f;            // c
  int block_size = 0;            // B of §2; 0 picks the backend's default
  void* stream = nullptr;        // cudaStream_t for Device::kCuda; ignored on the CPU
  // Packed documents in the shard (kernels/documents.h; needs B = 1). Unset: one sequence.
  Documents docs;
};

// Elements of one [B, H, D, E] state of p (S, dS, a local pair).
inline size_t state_count(const Problem& p) {
  return static_cast<size_t>(p.batch * p.heads * p.qk_dim * p.v_dim);
}

struct ForwardParams : Problem {
  const void* q = nullptr;  // [B,H,N,D]
  const void* k = nullptr;  // [B,H,N,D]
  const void* v = nullptr;  // [B,H,N,E]
  void* o = nullptr;        // [B,H,N,E] out
  Strides q_stride, k_stride, v_stride, o_stride;
  const float* initial_state = nullptr;  // S0 [B,H,D,E]; nullptr means 0
  float* final_state = nullptr;          // S_{N-1} [B,H,D,E] out; nullptr to skip
  // With docs (kernels/documents.h), per piece i = 0..K-1, [K,H,D,E] fp32 (B = 1):
  //   initial_state       S_in, read only when docs.continues (piece 0 continues a document)
  //   doc_initial_states  entry i read when piece i starts its document; nullptr means 0
  //   doc_final_states    entry i written when piece i ends its document; nullptr to skip
  //   final_state         the state after the shard's last token, as without documents
  const float* doc_initial_states = nullptr;
  float* doc_final_states = nullptr;
};

struct BackwardParams : Problem {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* d_o = nullptr;  // dL/dO [B,H,N,E]
  void* dq = nullptr;         // [B,H,N,D] out
  void* dk = nullptr;         // [B,H,N,D] out
  void* dv = nullptr;         // [B,H,N,E] out
  Strides q_stride, k_stride, v_stride, do_stride, dq_stride, dk_stride, dv_stride;
  const float* initial_state = nullptr;  // S0 used in the forward; nullptr means 0
  const float* d_final_state = nullptr;  // G = dL/dS_{N-1} [B,H,D,E]; nullptr means 0
  float* d_initial_state = nullptr;      // dS0 [B,H,D,E] out; nullptr to skip
  // With docs, mirroring ForwardParams ([K,H,D,E] fp32 per piece):
  //   initial_state         S_in of the forward, read only when docs.continues
  //   doc_initial_states    the forward's, read where the forward read them
  //   d_final_state         G, read only when !docs.ends (the last piece goes on to the right)
  //   d_doc_final_states    entry i read when piece i ends its document; nullptr means 0
  //   d_initial_state       dS_in: zero unless docs.continues
  //   d_doc_initial_states  entry i written when piece i starts its document; nullptr to skip
  const float* doc_initial_states = nullptr;
  const float* d_doc_final_states = nullptr;
  float* d_doc_initial_states = nullptr;
};

// The local state pair of a segment run from a zero state (§3), a weighted
// sum of outer products over the sequence:
//
//     kForward:  A = Σ_t λ^{N-1-t} k_tᵀ v_t        (x = k, y = v)   the local final state
//     kBackward: C = Σ_t c·λ^{t+1} q_tᵀ dO_t       (x = q, y = dO)  the local dS_in contribution
//
// The scalar part of the pair is λ^N (see segment_decay). Reads only x and y:
// no output rows are produced, so a rank can compute it before any exchange.
enum class StateKind { kForward, kBackward };

struct StateParams : Problem {
  StateKind kind = StateKind::kForward;
  const void* x = nullptr;  // k [B,H,N,D] or q [B,H,N,D]
  const void* y = nullptr;  // v [B,H,N,E] or dO [B,H,N,E]
  Strides x_stride, y_stride;
  float* state = nullptr;  // A or C [B,H,D,E] out
};

// Backward params over the problem, inputs and layout of a forward call: the
// Problem fields, q/k/v with their strides and the forward's initial state.
// dq and dk take the strides of q and k; d_o and dv those of v (same layout as
// the inputs). d_final_state and d_initial_state stay null for the caller.
BackwardParams backward_params(const ForwardParams& f, const void* d_o, void* dq, void* dk,
                               void* dv);

void forward(const ForwardParams& p);
void backward(const BackwardParams& p);
void local_state(const StateParams& p);

// Forward and backward in two phases, for callers that learn the entering state
// late (sequence parallel, docs/algorithm.md §3): phase 1 enqueues on p.stream
// everything that does not depend on that state, phase 2 (finish) the rest, and
// no pass over the inputs runs twice. The one-shot entry points above give the
// same function up to fp32 rounding.
//
// Ownership: a pass keeps its workspaces (on CUDA stream-ordered device memory,
// freed on p.stream at destruction) and the pointers of p; the caller keeps the
// tensors alive until the work on p.stream is done.
class ForwardPass {
 public:
  // Validates p as forward() does; p.initial_state and p.final_state are not
  // read (finish takes them). Phase 1 (CUDA, several segments in the shard): the
  // state pass over K, V and the segment combine from a zero state.
  explicit ForwardPass(const ForwardParams& p);
  ~ForwardPass();
  ForwardPass(ForwardPass&&) noexcept;
  ForwardPass& operator=(ForwardPass&&) noexcept;

  // A = Σ_t λ^{N-1-t} k_tᵀ v_t: the state after the shard from a zero initial
  // state, [B,H,D,E] fp32 in p.device memory, owned by the pass (valid until it
  // is destroyed, ready in stream order on p.stream). A backend that has not
  // produced it in phase 1 runs its state pass on the first call (CUDA with one
  // segment, the CPU backend), so a caller that never needs A never pays for it.
  const float* local_state();

  // Phase 2, once: o from the entering state s0 ([B,H,D,E] fp32, nullptr = 0),
  // and final_state = λ^N·s0 + A ([B,H,D,E] fp32 out, nullptr to skip).
  void finish(const float* initial_state, float* final_state);

  class Impl;  // the backend's implementation (kernels/backend.h)

 private:
  std::unique_ptr<Impl> impl_;
  bool finished_ = false;
};

class BackwardPass {
 public:
  // Validates p as backward() does; p.initial_state (S0 of the forward, here
  // S_in of the shard) is read, p.d_final_state and p.d_initial_state are not
  // (finish takes them). Phase 1 (CUDA): the S-prefix pass over K, V and the dQ
  // pass (dq is complete after it), and with several segments the dS state pass
  // over Q, dO with its combine from a zero gradient.
  explicit BackwardPass(const BackwardParams& p);
  ~BackwardPass();
  BackwardPass(BackwardPass&&) noexcept;
  BackwardPass& operator=(BackwardPass&&) noexcept;

  // C = Σ_t c·λ^{t+1} q_tᵀ dO_t: the state gradient leaving the shard to the
  // left when G = 0, [B,H,D,E] fp32, owned by the pass, as ForwardPass::local_state.
  const float* local_state();

  // Phase 2, once: dk, dv (and dq where phase 1 did not write it) from
  // G = d_final_state ([B,H,D,E] fp32, nullptr = 0), and
  // d_initial_state = λ^N·G + C ([B,H,D,E] fp32 out, nullptr to skip).
  void finish(const float* d_final_state, float* d_initial_state);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
  bool finished_ = false;
};

// a = λ_h^N for each head: the scalar of a segment's pair. decay may be null (a = 1).
void segment_decay(const float* decay, int64_t heads, int64_t seqlen, float* out);

// Per-head slopes of TransNormerLLM / Lightning Attention (§1): for H a power
// of two s_h = 2^(-8(h+1)/H); otherwise the slopes of the closest lower power
// of two P, then every other slope of 2P.
void slopes(int64_t heads, float* out);

// Default block size of a backend for a problem.
int default_block_size(Device device, int64_t qk_dim, int64_t v_dim);

// Tuning of the CUDA backend that tests and A/B benchmarks set; every setting gives the same
// function up to fp32 rounding, and the defaults are what users run. Set per process
// (set_kernel_tuning) and read by every call that follows; not thread-safe against calls in
// flight.
struct KernelTuning {
  // Which kernel family runs 16-bit inputs: kAuto picks the fastest the GPU has (wgmma on
  // sm_90a builds running on compute capability 9.0, mma.sync elsewhere); kMma forces the
  // mma.sync family (the sm_80 path) on every GPU. fp32 inputs always run the TF32 family.
  enum class Family { kAuto, kMma };
  Family family = Family::kAuto;
  bool fused = true;         // wgmma: the fused single-pass forward and dQ (else three passes)
  bool decay_window = true;  // skip chunks whose terms all enter a state below 2^-64
  int segment_waves = 0;     // > 0: segment count ceil(w·resident CTAs / (B·H·slices))
  int64_t segment_len = 0;   // > 0: segment length (rounded up to 64 rows); wins over waves
  bool check_decay_every_call = false;  // read and check decay every call (else once per array)
  bool pool_release = false;  // let the stream-ordered pool return memory at each synchronisation
  int tf32_stages = 0;        // TF32 family: cp.async stages, 1 or 2 (0: by occupancy)
  // Packed documents (kernels/documents_impl.h): short pieces of different lengths run as one
  // front-padded batch. kAuto: on the CUDA backend (where each piece would be its own launches);
  // kOn: on every backend (the CPU tests use it); kOff: never.
  enum class PadShort { kAuto, kOn, kOff };
  PadShort pad_short_documents = PadShort::kAuto;
  // Where packed documents run: inside the block loops (CPU: blocks cut at the boundaries,
  // kernels/cpu/blocks.h; CUDA: one chunk table per pass, kernels/cuda/doc_chunks.h, read by the
  // wgmma family: 16-bit inputs with 16-byte aligned rows on sm_90a) or piece by piece
  // (kernels/documents.cpp: the mma and tf32 families, or when asked). kAuto: the block loops
  // where the backend has them; kPieces: pieces everywhere (tests and A/B benchmarks).
  enum class DocumentsPath { kAuto, kPieces };
  DocumentsPath documents_path = DocumentsPath::kAuto;
};
void set_kernel_tuning(const KernelTuning& tuning);
KernelTuning kernel_tuning();
const char* family_name(KernelTuning::Family family);
// The kernel families the CUDA backend runs on the current device with the current tuning, e.g.
// "bf16/fp16: wgmma (sm_90a), fp32: tf32"; "no CUDA backend" or "no GPU visible" otherwise.
std::string kernel_families();

// A 128-bit digest of the H decay rates (their exact bytes; {0, 0} when decay is null), which the
// ranks of a sequence-parallel group compare so that they agree on decay exactly. On CUDA the
// values are read by the decay check of a pass (kernels/cuda/attention.cu): once per device,
// pointer and H by default, every call with KernelTuning::check_decay_every_call; a decay array
// changed in place between calls is seen only in that mode.
using DecayDigest = std::array<uint64_t, 2>;
DecayDigest decay_digest(const Problem& p);
// The digest of H host values (the hash decay_digest applies).
DecayDigest digest_values(const float* values, int64_t heads);

// Whether this build includes the CUDA backend, and whether a GPU is visible.
bool cuda_compiled();
bool cuda_available();

}  // namespace lightring::kernels
