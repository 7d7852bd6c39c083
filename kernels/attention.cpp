// Dispatch of the kernels/ API to a backend, and the small host helpers.
#include "kernels/attention.h"

#include <cmath>
#include <cstring>
#include <mutex>

#include "kernels/backend.h"
#ifdef LIGHTRING_WITH_CUDA
#include "kernels/cuda/family.h"
#endif
#include "core/error.h"

namespace lightring::kernels {

const char* device_name(Device d) {
  return d == Device::kCuda ? "cuda" : "cpu";
}

Strides contiguous_bhnd(int64_t heads, int64_t seqlen, int64_t dim) {
  return Strides{heads * seqlen * dim, seqlen * dim, dim};
}

Strides contiguous_bnhd(int64_t heads, int64_t seqlen, int64_t dim) {
  return Strides{seqlen * heads * dim, dim, heads * dim};
}

bool cuda_compiled() {
#ifdef LIGHTRING_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
#ifdef LIGHTRING_WITH_CUDA
  return cuda::available();
#else
  return false;
#endif
}

int default_block_size(Device device, int64_t qk_dim, int64_t v_dim) {
#ifdef LIGHTRING_WITH_CUDA
  if (device == Device::kCuda) return cuda::default_block_size(qk_dim, v_dim);
#endif
  (void)qk_dim;
  (void)v_dim;
  (void)device;
  return cpu::kDefaultBlockSize;
}

namespace {

template <typename Params>
Params resolved(const Params& p) {
  Params r = p;
  if (r.block_size == 0) r.block_size = default_block_size(r.device, r.qk_dim, r.v_dim);
  return r;
}

}  // namespace

BackwardParams backward_params(const ForwardParams& f, const void* d_o, void* dq, void* dk,
                               void* dv) {
  BackwardParams b;
  static_cast<Problem&>(b) = f;
  b.q = f.q;
  b.k = f.k;
  b.v = f.v;
  b.d_o = d_o;
  b.dq = dq;
  b.dk = dk;
  b.dv = dv;
  b.q_stride = b.dq_stride = f.q_stride;
  b.k_stride = b.dk_stride = f.k_stride;
  b.v_stride = b.do_stride = b.dv_stride = f.v_stride;
  b.initial_state = f.initial_state;
  b.doc_initial_states = f.doc_initial_states;
  return b;
}

namespace {

// Whether the CUDA backend runs p's packed documents itself (backend.h: cuda::runs_documents).
template <typename Params>
bool cuda_documents(const Params& p) {
#ifdef LIGHTRING_WITH_CUDA
  return p.device == Device::kCuda && p.docs.enabled() && cuda::runs_documents(p);
#else
  (void)p;
  return false;
#endif
}

// Whether the CPU backend runs p's packed documents in its own block loop (blocks cut at the
// boundaries, kernels/cpu/blocks.h) rather than piece by piece (KernelTuning::documents_path).
bool cpu_documents(const Problem& p) {
  return p.device == Device::kCpu && p.docs.enabled() &&
         kernel_tuning().documents_path != KernelTuning::DocumentsPath::kPieces;
}

// Whether kernels/documents.cpp runs p's documents piece by piece.
template <typename Params>
bool by_pieces(const Params& p) {
  return p.docs.enabled() && !cuda_documents(p) && !cpu_documents(p);
}

}  // namespace

void forward(const ForwardParams& params) {
  validate(params);
  const ForwardParams p = resolved(params);
  if (by_pieces(p)) return documents::forward(p);
#ifdef LIGHTRING_WITH_CUDA
  if (p.device == Device::kCuda) return cuda::forward(p);
#endif
  cpu::forward(p);
}

void backward(const BackwardParams& params) {
  validate(params);
  const BackwardParams p = resolved(params);
  if (by_pieces(p)) return documents::backward(p);
#ifdef LIGHTRING_WITH_CUDA
  if (p.device == Device::kCuda) return cuda::backward(p);
#endif
  cpu::backward(p);
}

void local_state(const StateParams& params) {
  validate(params);
  const StateParams p = resolved(params);
#ifdef LIGHTRING_WITH_CUDA
  if (p.device == Device::kCuda) return cuda::local_state(p);
#endif
  cpu::local_state(p);
}

ForwardPass::ForwardPass(const ForwardParams& params) {
  validate(params);
  ForwardParams p = resolved(params);
  p.initial_state = nullptr;  // finish() takes both states
  p.final_state = nullptr;
  if (by_pieces(p)) {
    impl_ = documents::forward_pass(p);
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  if (p.device == Device::kCuda) {
    impl_ = cuda::forward_pass(p);
    return;
  }
#endif
  impl_ = cpu::forward_pass(p);
}

ForwardPass::~ForwardPass() = default;
ForwardPass::ForwardPass(ForwardPass&&) noexcept = default;
ForwardPass& ForwardPass::operator=(ForwardPass&&) noexcept = default;

const float* ForwardPass::local_state() {
  LR_CHECK(impl_ != nullptr, "ForwardPass::local_state: the pass was moved from");
  return impl_->local_state();
}

void ForwardPass::finish(const float* initial_state, float* final_state) {
  LR_CHECK(impl_ != nullptr, "ForwardPass::finish: the pass was moved from");
  LR_CHECK(!finished_, "ForwardPass::finish may be called only once");
  finished_ = true;
  impl_->finish(initial_state, final_state);
}

BackwardPass::BackwardPass(const BackwardParams& params) {
  validate(params);
  BackwardParams p = resolved(params);
  p.d_final_state = nullptr;  // finish() takes both state gradients
  p.d_initial_state = nullptr;
  if (by_pieces(p)) {
    impl_ = documents::backward_pass(p);
    return;
  }
#ifdef LIGHTRING_WITH_CUDA
  if (p.device == Device::kCuda) {
    impl_ = cuda::backward_pass(p);
    return;
  }
#endif
  impl_ = cpu::backward_pass(p);
}

BackwardPass::~BackwardPass() = default;
BackwardPass::BackwardPass(BackwardPass&&) noexcept = default;
BackwardPass& BackwardPass::operator=(BackwardPass&&) noexcept = default;

const float* BackwardPass::local_state() {
  LR_CHECK(impl_ != nullptr, "BackwardPass::local_state: the pass was moved from");
  return impl_->local_state();
}

void BackwardPass::finish(const float* d_final_state, float* d_initial_state) {
  LR_CHECK(impl_ != nullptr, "BackwardPass::finish: the pass was moved from");
  LR_CHECK(!finished_, "BackwardPass::finish may be called only once");
  finished_ = true;
  impl_->finish(d_final_state, d_initial_state);
}

namespace {
std::mutex g_tuning_mu;
KernelTuning g_tuning;
}  // namespace

void set_kernel_tuning(const KernelTuning& tuning) {
  LR_CHECK(tuning.segment_waves >= 0 && tuning.segment_len >= 0,
           "KernelTuning: segment_waves and segment_len must be >= 0 (0: the cost model)");
  LR_CHECK(tuning.tf32_stages >= 0 && tuning.tf32_stages <= 2,
           "KernelTuning: tf32_stages must be 0 (by occupancy), 1 or 2 (got ", tuning.tf32_stages,
           ")");
  std::lock_guard<std::mutex> lock(g_tuning_mu);
  g_tuning = tuning;
}

KernelTuning kernel_tuning() {
  std::lock_guard<std::mutex> lock(g_tuning_mu);
  return g_tuning;
}

const char* family_name(KernelTuning::Family family) {
  return family == KernelTuning::Family::kMma ? "mma" : "auto";
}

std::string kernel_families() {
#ifdef LIGHTRING_WITH_CUDA
  if (!cuda_available()) return "no GPU visible";
  const std::string fast = cuda::family_of(DType::kBFloat16, 128, 128);
  return "bf16/fp16: " + fast + (fast == "wgmma" ? " (sm_90a)" : " (mma.sync)") + ", fp32: tf32";
#else
  return "no CUDA backend in this build";
#endif
}

DecayDigest digest_values(const float* values, int64_t heads) {
  // Two independent 64-bit hashes of the bytes (FNV-1a over each 32-bit word with a
  // splitmix64 finaliser per word, distinct seeds): equal digests mean equal bytes for any
  // disagreement that is not constructed to collide.
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  DecayDigest d = {0xcbf29ce484222325ull ^ static_cast<uint64_t>(heads),
                   0x84222325cbf29ce4ull + static_cast<uint64_t>(heads)};
  for (int64_t h = 0; h < heads; ++h) {
    uint32_t bits;
    std::memcpy(&bits, values + h, sizeof bits);
    d[0] = mix((d[0] ^ bits) * 0x100000001b3ull);
    d[1] = mix(d[1] + (static_cast<uint64_t>(bits) << 17) + static_cast<uint64_t>(h) + 1);
  }
  return d;
}

DecayDigest decay_digest(const Problem& p) {
  if (!p.decay) return {0, 0};
  if (p.device == Device::kCuda) {
#ifdef LIGHTRING_WITH_CUDA
    return cuda::decay_digest(p);
#else
    LR_THROW("decay_digest: this build has no CUDA backend");
#endif
  }
  return digest_values(p.decay, p.heads);
}

void segment_decay(const float* decay, int64_t heads, int64_t seqlen, float* out) {
  LR_CHECK(out != nullptr, "segment_decay: out must not be null");
  for (int64_t h = 0; h < heads; ++h) {
    const double s = decay ? decay[h] : 0.0;
    out[h] = static_cast<float>(std::exp(-s * static_cast<double>(seqlen)));
  }
}

void slopes(int64_t heads, float* out) {
  LR_CHECK(heads >= 1, "slopes: heads must be >= 1 (got ", heads, ")");
  LR_CHECK(out != nullptr, "slopes: out must not be null");
  // s_h = 2^(-8(h+1)/n) for n a power of two (TransNormerLLM _build_slope_tensor).
  auto power_of_two = [](int64_t n, int64_t h) {
    return static_cast<float>(std::pow(2.0, -8.0 * static_cast<double>(h + 1) / n));
  };
  int64_t p = 1;
  while (p * 2 <= heads) p *= 2;
  for (int64_t h = 0; h < p; ++h) out[h] = power_of_two(p, h);
  // The rest: every other slope of 2P, starting with the first.
  for (int64_t h = p, j = 0; h < heads; ++h, j += 2) out[h] = power_of_two(2 * p, j);
}

}  // namespace lightring::kernels
