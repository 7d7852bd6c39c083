// CUDA backend: the segment plan, the decay check and the segment-state
// helpers declared in kernels/cuda/segments.h, shared by the entry points of
// kernels/cuda/attention.cu (which describes the schedule of docs/algorithm.md
// §3 inside one GPU), and the device queries of kernels/backend.h.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/cuda/family.h"
#include "kernels/cuda/scan.h"
#include "kernels/cuda/segments.h"

namespace lightring::kernels::cuda {

namespace {

// The segment count G of an mma / wgmma scan: B·H·slices·G = base·G CTAs run in ceil(base·G /
// slots) waves (slots = CTAs resident at once). G = 1 is the output pass alone; G > 1 adds the
// state pass (or the fused scan's state phase) over K and V, ~1.5x the work per row. The G in
// [1, min(max_segs, 4·ceil(slots / base))] of least waves(G)·cost(G) / G wins, the smallest on
// ties: B=1 H=32 gives G = 4 (one wave of 128 CTAs on 132 SMs), B=4 H=32 gives G = 1. The
// measurements behind the cost model are in bench/NOTES.md.
int64_t best_segment_count(int64_t base, int64_t slots, int64_t max_segs) {
  const int64_t g_hi = std::min(max_segs, 4 * ((slots + base - 1) / base));
  int64_t best = 1;
  double best_cost = 0.0;
  for (int64_t g = 1; g <= std::max<int64_t>(1, g_hi); ++g) {
    const double waves = static_cast<double>((base * g + slots - 1) / slots);
    const double cost = waves * (g == 1 ? 1.0 : 1.5) / static_cast<double>(g);
    if (g == 1 || cost < best_cost) {
      best = g;
      best_cost = cost;
    }
  }
  return best;
}

// seg_len (or KernelTuning::segment_len) rounded up to whole chunks, and the segment count.
SegmentPlan finish_plan(const Problem& p, int64_t seg_len) {
  const int64_t forced = kernel_tuning().segment_len;
  if (forced > 0) seg_len = forced;
  seg_len = (seg_len + kChunk - 1) / kChunk * kChunk;
  SegmentPlan plan;
  plan.seg_len = seg_len;
  const int64_t num_segs = (p.seqlen + seg_len - 1) / seg_len;
  LR_CHECK(num_segs <= (1 << 20), "CUDA backend: too many segments (", num_segs, ")");
  plan.num_segs = static_cast<int>(num_segs);
  return plan;
}

}  // namespace

void retain_pool_memory() {
  // Bit d: device d's pool is set. Setting it twice (two threads racing) is harmless, so the
  // fast path of every workspace is one relaxed load; devices >= 64 set it every time.
  static std::atomic<uint64_t> done{0};
  // Read at a device's first workspace: the pool keeps its threshold afterwards.
  const bool release = kernel_tuning().pool_release;
  int device = 0;
  LR_CUDA_CHECK(cudaGetDevice(&device));
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (release || (done.load(std::memory_order_relaxed) & bit)) return;
  cudaMemPool_t pool;
  LR_CUDA_CHECK(cudaDeviceGetMemPool(&pool, device));
  uint64_t threshold = UINT64_MAX;
  LR_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  done.fetch_or(bit, std::memory_order_relaxed);
}

// G segments of seg_len rows (a multiple of 64, >= kMinSegment unless N is shorter). The tf32
// family (2 CTAs per SM) takes G with B·H·slices·G close to 4 CTAs per SM; the mma and wgmma
// families take best_segment_count (one CTA per SM, two for wgmma with 64-column slices at
// dk <= 64). KernelTuning::segment_waves = w forces G = ceil(w·slots / (B·H·slices));
// KernelTuning::segment_len overrides seg_len (rounded up to 64; tests use it to cover many
// segments at small N). The measurements behind the plan are in bench/NOTES.md.
SegmentPlan plan_segments(const Problem& p, int max_dv) {
  constexpr int64_t kMinSegment = 256;
  const int64_t forced_waves = kernel_tuning().segment_waves;
  int device = 0, sms = 0;
  LR_CUDA_CHECK(cudaGetDevice(&device));
  LR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int dk = static_cast<int>(p.qk_dim);
  const bool mma = mma_covers(p.dtype, dk);
  const int width = mma ? mma_width(dk, max_dv) : slice_width(p.dtype);
  const int64_t base = p.batch * p.heads * ((max_dv + width - 1) / width);
  // tf32: 2 CTAs per SM; mma, wgmma with 128 columns or dk > 128: 1; wgmma with 64 at dk <= 64: 2.
  const int64_t per_sm =
      !mma || (width == 64 && dk <= 64 && wgmma_covers(p.dtype, dk, max_dv)) ? 2 : 1;
  const int64_t slots = per_sm * sms;
  const int64_t max_segs = std::max<int64_t>(1, p.seqlen / kMinSegment);
  // Forced waves, or tf32's 2 waves of 2 CTAs per SM: G = ceil(waves·slots / base).
  const int64_t waves = forced_waves ? forced_waves : 2;
  const int64_t segs = mma && !forced_waves
                           ? best_segment_count(base, slots, max_segs)
                           : std::max<int64_t>(1, (waves * slots + base - 1) / base);
  const int64_t g = std::min(max_segs, segs);
  return finish_plan(p, (p.seqlen + g - 1) / g);
}

namespace {

// Decay arrays (device, pointer, H) whose values passed check_decay, unless
// KernelTuning::check_decay_every_call. Bounded: cleared when full.
std::mutex g_checked_mu;
using DecayKey = std::tuple<int, const float*, int64_t>;
std::vector<std::pair<DecayKey, DecayDigest>> g_checked;  // with the digest of the values read

}  // namespace

cudaStream_t side_stream(bool high_priority) {
  constexpr int kMaxDevices = 64;
  static std::mutex mu;
  static cudaStream_t streams[kMaxDevices][2] = {};
  int device = 0;
  LR_CUDA_CHECK(cudaGetDevice(&device));
  LR_CHECK(device < kMaxDevices, "CUDA backend: device index ", device, " >= ", kMaxDevices);
  std::lock_guard<std::mutex> lock(mu);
  cudaStream_t& s = streams[device][high_priority ? 1 : 0];
  if (!s) {
    int least = 0, greatest = 0;
    LR_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    LR_CUDA_CHECK(
        cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, high_priority ? greatest : least));
  }
  return s;
}

namespace {

constexpr int kMaxPoolDevices = 64;
std::mutex g_events_mu;
std::vector<cudaEvent_t> g_free_events[kMaxPoolDevices];

}  // namespace

PooledEvent::PooledEvent() {
  LR_CUDA_CHECK(cudaGetDevice(&device_));
  LR_CHECK(device_ < kMaxPoolDevices, "CUDA backend: device index ", device_,
           " >= ", kMaxPoolDevices);
  {
    std::lock_guard<std::mutex> lock(g_events_mu);
    std::vector<cudaEvent_t>& free = g_free_events[device_];
    if (!free.empty()) {
      event_ = free.back();
      free.pop_back();
      return;
    }
  }
  LR_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
}

PooledEvent::~PooledEvent() {
  std::lock_guard<std::mutex> lock(g_events_mu);
  g_free_events[device_].push_back(event_);
}

void forget_checked_decay() {
  std::lock_guard<std::mutex> lock(g_checked_mu);
  g_checked.clear();
}

namespace {
// Reads, checks and digests the decay values (see check_decay); digest {0, 0} while capturing.
DecayDigest read_decay(const Problem& p, cudaStream_t stream) {
  if (!p.decay) return {0, 0};
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  LR_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return {0, 0};
  const bool always = kernel_tuning().check_decay_every_call;
  int device = 0;
  LR_CUDA_CHECK(cudaGetDevice(&device));
  const DecayKey key = std::make_tuple(device, p.decay, p.heads);
  if (!always) {
    std::lock_guard<std::mutex> lock(g_checked_mu);
    for (const auto& [k, digest] : g_checked)
      if (k == key) return digest;
  }
  std::vector<float> s(p.heads);
  LR_CUDA_CHECK(
      cudaMemcpyAsync(s.data(), p.decay, p.heads * sizeof(float), cudaMemcpyDeviceToHost, stream));
  LR_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (int64_t h = 0; h < p.heads; ++h) {
    LR_CHECK(std::isfinite(s[h]) && s[h] >= 0.0f, "decay[", h, "] must be finite and >= 0 (got ",
             s[h], "); decay has one rate per head, shape [H], on the GPU");
  }
  const DecayDigest digest = digest_values(s.data(), p.heads);
  if (!always) {
    std::lock_guard<std::mutex> lock(g_checked_mu);
    if (g_checked.size() >= 256) g_checked.clear();
    g_checked.emplace_back(key, digest);
  }
  return digest;
}
}  // namespace

void check_decay(const Problem& p, cudaStream_t stream) {
  read_decay(p, stream);
}

DecayDigest decay_digest(const Problem& p) {
  return read_decay(p, static_cast<cudaStream_t>(p.stream));
}

ScanParams base_params(const Problem& p, const SegmentPlan& plan) {
  // ScanParams::window: 64·ln 2 (weights below 2^-64) unless KernelTuning::decay_window is off.
  const float window = kernel_tuning().decay_window ? 64.0f * 0.6931472f : 0.0f;
  ScanParams sp;
  sp.window = window;
  sp.dtype = p.dtype;
  sp.batch = p.batch;
  sp.heads = p.heads;
  sp.seqlen = p.seqlen;
  sp.decay = p.decay;
  sp.seg_len = plan.seg_len;
  sp.num_segs = plan.num_segs;
  return sp;
}

// [B·H, G, dk, dv] contiguous workspace; transposed: element (i, j) is X[j][i] of a [dv][dk] array.
StateRef segment_states(float* ws, int num_segs, int dk, int dv, bool transposed) {
  const int64_t de = static_cast<int64_t>(dk) * dv;
  return transposed ? StateRef{ws, num_segs * de, de, 1, dk}
                    : StateRef{ws, num_segs * de, de, dv, 1};
}

// A user state [B, H, rows, cols] seen as the kernel's [dk = rows][dv = cols]; transposed: a user
// state [B, H, cols, rows] seen as [dk = rows][dv = cols] (element (i, j) is X[j][i]).
StateRef user_state(const float* s, int64_t rows, int64_t cols, bool transposed) {
  float* ptr = const_cast<float*>(s);
  return transposed ? StateRef{ptr, rows * cols, 0, 1, rows}
                    : StateRef{ptr, rows * cols, 0, cols, 1};
}

// Local pairs of every segment of a view (o == nullptr), combined in place into entering
// states; final_out (may be null) receives the state after the whole view.
void prefix_states(ScanParams sp, float* ws, const float* init, float* final_out,
                   cudaStream_t stream) {
  sp.o = nullptr;
  sp.state_in = StateRef{};
  sp.state_out = segment_states(ws, sp.num_segs, sp.dk, sp.dv);
  scan(sp, stream);
  combine(ws, sp.batch * sp.heads, sp.num_segs, sp.seg_len, sp.seqlen, sp.heads, sp.dk, sp.dv,
          sp.decay, init, final_out, stream, sp.docs.segs);
}

bool sm90a_device() {
#if defined(LIGHTRING_CUDA_SM90A)
  constexpr int kMaxDevices = 64;
  static std::atomic<int> known[kMaxDevices] = {};  // 0 unknown, 1 no, 2 yes
  int device = 0;
  LR_CUDA_CHECK(cudaGetDevice(&device));
  if (device < kMaxDevices && known[device].load(std::memory_order_relaxed) != 0)
    return known[device].load(std::memory_order_relaxed) == 2;
  int major = 0, minor = 0;
  LR_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  LR_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  const bool yes = major == 9 && minor == 0;
  if (device < kMaxDevices) known[device].store(yes ? 2 : 1, std::memory_order_relaxed);
  return yes;
#else
  return false;
#endif
}

bool available() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  if (!ok) cudaGetLastError();  // clear the (non-sticky) error of a machine without a GPU
  return ok;
}

int default_block_size(int64_t, int64_t) {
  return kChunk;
}

}  // namespace lightring::kernels::cuda
