// CUDA backend entry points: forward, backward and local_state as scans
// (scan.h) over views of the inputs, with the two-level segment schedule of
// docs/algorithm.md §3 inside the GPU:
//
//   1. state pass: each (b·h, segment) computes its local pair X_g from zero;
//   2. combine:    X_in(g) = init ⊕ (a_0, X_0) ⊕ … ⊕ (a_{g-1}, X_{g-1});
//   3. main pass:  each segment runs the block form from X_in(g).
//
// Segments are sized so that B·H·slices·G fills the GPU several times over;
// when B·H·slices alone does (G = 1) steps 1–2 are skipped and the main pass
// reads the initial state and writes the final state itself.
//
// Block size: the CUDA kernels always use 64-row chunks. Any block_size the
// caller passes (1..256) is accepted and gives the same function; results
// differ from another block size only by fp32 rounding of the same sums.
//
// Decay: `decay` is a device pointer here; its values are copied to the host
// and checked (finite, >= 0) before any launch, except while the stream is
// being captured into a CUDA graph (then the check is skipped).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/scan.h"
#include "kernels/cuda/variant.h"
#include "kernels/error.h"

namespace lightring::kernels::cuda {

namespace {

// Stream-ordered fp32 scratch (cudaMallocAsync), freed on the same stream.
class Workspace {
 public:
  Workspace(size_t count, cudaStream_t stream) : stream_(stream) {
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
  cudaStream_t stream_;
};

Operand operand(const void* ptr, const Strides& s) {
  return Operand{ptr, s.batch, s.head, s.seq};
}

// Points the scan's output at `o`, a view of a tensor the caller owns mutably.
void set_output(ScanParams* s, const Operand& o) {
  s->o = const_cast<void*>(o.ptr);
  s->o_sb = o.sb;
  s->o_sh = o.sh;
  s->o_st = o.st;
}

// The view t' = N-1-t of an operand.
Operand reversed(Operand x, int64_t seqlen, DType dtype) {
  x.ptr = static_cast<const char*>(x.ptr) +
          (seqlen - 1) * x.st * static_cast<int64_t>(dtype_size(dtype));
  x.st = -x.st;
  return x;
}

// Variant v4 (variant.h): every CTA holds an SM alone, so B·H·slices·G CTAs take
// ceil(CTAs / SMs) waves. Returns the segment length (a multiple of 64) of the G in
// [g_lo, 4·g_lo] whose last wave is fullest (the smallest such G on ties), with
// g_lo = ceil(waves·SMs / (B·H·slices)) and G capped at max_segs.
int64_t v4_seg_len(int64_t seqlen, int64_t base, int64_t sms, int64_t waves, int64_t max_segs) {
  const int64_t g_lo = std::min(max_segs, std::max<int64_t>(1, (waves * sms + base - 1) / base));
  const int64_t g_hi = std::min(max_segs, 4 * g_lo);
  int64_t best_len = 0;
  double best_idle = 2.0;
  for (int64_t g = g_lo; g <= g_hi; ++g) {
    const int64_t len = ((seqlen + g - 1) / g + kChunk - 1) / kChunk * kChunk;
    const int64_t ctas = base * ((seqlen + len - 1) / len);
    const int64_t slots = (ctas + sms - 1) / sms * sms;
    const double idle = static_cast<double>(slots - ctas) / static_cast<double>(slots);
    if (idle < best_idle) {
      best_idle = idle;
      best_len = len;
    }
  }
  return best_len;
}

struct SegmentPlan {
  int64_t seg_len = 0;
  int num_segs = 1;
};

// G segments of seg_len rows (a multiple of 64, >= kMinSegment unless N is shorter), with
// B·H·slices·G close to `waves` CTAs per SM (default 4; LIGHTRING_CUDA_WAVES overrides it, for
// measuring wave quantisation, bench/NOTES.md); variant v4 sizes them with v4_seg_len.
// LIGHTRING_CUDA_SEG_LEN overrides seg_len (rounded up to 64; tests use it to cover many
// segments at small N).
SegmentPlan plan_segments(const Problem& p, int max_dv) {
  constexpr int64_t kMinSegment = 256;
  static const int64_t waves = [] {
    const char* env = std::getenv("LIGHTRING_CUDA_WAVES");
    const long long w = env ? std::atoll(env) : 0;
    return w >= 1 ? static_cast<int64_t>(w) : int64_t{4};
  }();
  int device = 0, sms = 0;
  LR_CUDA_CHECK(cudaGetDevice(&device));
  LR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t slices = (max_dv + slice_width(p.dtype) - 1) / slice_width(p.dtype);
  const int64_t base = p.batch * p.heads * slices;
  int64_t segs = std::max<int64_t>(1, (waves * sms + base - 1) / base);
  segs = std::min(segs, std::max<int64_t>(1, p.seqlen / kMinSegment));
  int64_t seg_len = (p.seqlen + segs - 1) / segs;
  // v4 and v5 run one output-pass CTA per SM: whole waves of B·H·slices·G CTAs.
  const int dk = static_cast<int>(p.qk_dim);
  const int64_t width = v5_covers(p.dtype, dk, max_dv)   ? v5_width(max_dv)
                        : v4_covers(p.dtype, dk, max_dv) ? kV4Width
                                                         : 0;
  if (width > 0) {
    const int64_t base_one = p.batch * p.heads * ((max_dv + width - 1) / width);
    seg_len =
        v4_seg_len(p.seqlen, base_one, sms, waves, std::max<int64_t>(1, p.seqlen / kMinSegment));
  }
  if (const char* env = std::getenv("LIGHTRING_CUDA_SEG_LEN")) {
    const long long forced = std::atoll(env);
    LR_CHECK(forced >= 1, "LIGHTRING_CUDA_SEG_LEN must be a positive integer (got '", env, "')");
    seg_len = forced;
  }
  seg_len = (seg_len + kChunk - 1) / kChunk * kChunk;
  SegmentPlan plan;
  plan.seg_len = seg_len;
  const int64_t num_segs = (p.seqlen + seg_len - 1) / seg_len;
  LR_CHECK(num_segs <= (1 << 20), "CUDA backend: too many segments (", num_segs, ")");
  plan.num_segs = static_cast<int>(num_segs);
  return plan;
}

void check_decay(const Problem& p, cudaStream_t stream) {
  if (!p.decay) return;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  LR_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return;
  std::vector<float> s(p.heads);
  LR_CUDA_CHECK(
      cudaMemcpyAsync(s.data(), p.decay, p.heads * sizeof(float), cudaMemcpyDeviceToHost, stream));
  LR_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (int64_t h = 0; h < p.heads; ++h) {
    LR_CHECK(std::isfinite(s[h]) && s[h] >= 0.0f, "decay[", h, "] must be finite and >= 0 (got ",
             s[h], "); decay has one rate per head, shape [H], on the GPU");
  }
}

ScanParams base_params(const Problem& p, const SegmentPlan& plan) {
  ScanParams sp;
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
StateRef segment_states(float* ws, int num_segs, int dk, int dv, bool transposed = false) {
  const int64_t de = static_cast<int64_t>(dk) * dv;
  return transposed ? StateRef{ws, num_segs * de, de, 1, dk}
                    : StateRef{ws, num_segs * de, de, dv, 1};
}

// A user state [B, H, rows, cols] seen as the kernel's [dk = rows][dv = cols]; transposed: a user
// state [B, H, cols, rows] seen as [dk = rows][dv = cols] (element (i, j) is X[j][i]).
StateRef user_state(const float* s, int64_t rows, int64_t cols, bool transposed = false) {
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
          sp.decay, init, final_out, stream);
}

}  // namespace

bool available() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  if (!ok) cudaGetLastError();  // clear the (non-sticky) error of a machine without a GPU
  return ok;
}

int default_block_size(int64_t, int64_t) {
  return kChunk;
}

void forward(const ForwardParams& p) {
  const auto stream = static_cast<cudaStream_t>(p.stream);
  check_decay(p, stream);
  const int D = static_cast<int>(p.qk_dim), E = static_cast<int>(p.v_dim);
  const SegmentPlan plan = plan_segments(p, E);
  ScanParams sp = base_params(p, plan);
  sp.dk = D;
  sp.dv = E;
  sp.q = operand(p.q, p.q_stride);
  sp.k = operand(p.k, p.k_stride);
  sp.v = operand(p.v, p.v_stride);
  set_output(&sp, operand(p.o, p.o_stride));
  sp.c_intra = sp.c_inter = p.scale;
  sp.c_state = 1.0f;
  sp.shift = 0;
  const bool segmented = plan.num_segs > 1;
  Workspace ws(segmented ? p.batch * p.heads * plan.num_segs * D * E : 0, stream);
  if (segmented) {
    prefix_states(sp, ws.get(), p.initial_state, p.final_state, stream);
    sp.state_in = segment_states(ws.get(), plan.num_segs, D, E);
  } else {
    sp.state_in = user_state(p.initial_state, D, E);
    sp.state_out = user_state(p.final_state, D, E);
  }
  scan(sp, stream);
}

void backward(const BackwardParams& p) {
  const auto stream = static_cast<cudaStream_t>(p.stream);
  check_decay(p, stream);
  const int D = static_cast<int>(p.qk_dim), E = static_cast<int>(p.v_dim);
  const int64_t N = p.seqlen;
  const SegmentPlan plan = plan_segments(p, std::max(D, E));
  const bool segmented = plan.num_segs > 1;
  const int64_t ws_count = segmented ? p.batch * p.heads * plan.num_segs * D * E : 0;
  Workspace ws_s(ws_count, stream), ws_ds(ws_count, stream);

  const Operand q = operand(p.q, p.q_stride), k = operand(p.k, p.k_stride);
  const Operand v = operand(p.v, p.v_stride), d_o = operand(p.d_o, p.do_stride);
  const float c = p.scale;

  // dQ = c[(dO Vᵀ ⊙ M) K + Λ dO S(i)ᵀ]: the forward scan of (q=dO, k=V, v=K) with X = Sᵀ.
  {
    ScanParams sp = base_params(p, plan);
    if (segmented) {
      ScanParams st = sp;  // S prefix: the state scan of (k=K, v=V), X = S [D][E]
      st.dk = D;
      st.dv = E;
      st.k = k;
      st.v = v;
      prefix_states(st, ws_s.get(), p.initial_state, nullptr, stream);
      sp.state_in = segment_states(ws_s.get(), plan.num_segs, E, D, /*transposed=*/true);
    } else {
      sp.state_in = user_state(p.initial_state, E, D, /*transposed=*/true);
    }
    sp.dk = E;
    sp.dv = D;
    sp.q = d_o;
    sp.k = v;
    sp.v = k;
    set_output(&sp, operand(p.dq, p.dq_stride));
    sp.c_intra = sp.c_inter = c;
    sp.c_state = 1.0f;
    sp.shift = 0;
    scan(sp, stream);
  }

  // dV and dK: reversed scans with X = dS(i+1), seeded with G = d_final_state.
  const Operand qr = reversed(q, N, p.dtype), kr = reversed(k, N, p.dtype);
  const Operand vr = reversed(v, N, p.dtype), dor = reversed(d_o, N, p.dtype);
  ScanParams sp = base_params(p, plan);
  sp.c_intra = c;
  sp.c_inter = 1.0f;
  sp.c_state = c;
  sp.shift = 1;
  StateRef ds_in, ds_in_t, ds_out;
  if (segmented) {
    ScanParams st = sp;  // dS suffix: the reversed state scan of (k=Q, v=dO), X = dS [D][E]
    st.dk = D;
    st.dv = E;
    st.k = qr;
    st.v = dor;
    prefix_states(st, ws_ds.get(), p.d_final_state, p.d_initial_state, stream);
    ds_in = segment_states(ws_ds.get(), plan.num_segs, D, E);
    ds_in_t = segment_states(ws_ds.get(), plan.num_segs, E, D, /*transposed=*/true);
  } else {
    ds_in = user_state(p.d_final_state, D, E);
    ds_in_t = user_state(p.d_final_state, E, D, /*transposed=*/true);
    ds_out = user_state(p.d_initial_state, D, E);
  }
  // dV = c[(Q Kᵀ ⊙ M)ᵀ dO] + Γ K dS(i+1): q=K, k=Q, v=dO.
  {
    ScanParams s = sp;
    s.dk = D;
    s.dv = E;
    s.q = kr;
    s.k = qr;
    s.v = dor;
    set_output(&s, reversed(operand(p.dv, p.dv_stride), N, p.dtype));
    s.state_in = ds_in;
    s.state_out = ds_out;
    scan(s, stream);
  }
  // dK = c[(dO Vᵀ ⊙ M)ᵀ Q] + Γ V dS(i+1)ᵀ: q=V, k=dO, v=Q, X = dSᵀ.
  {
    ScanParams s = sp;
    s.dk = E;
    s.dv = D;
    s.q = vr;
    s.k = dor;
    s.v = qr;
    set_output(&s, reversed(operand(p.dk, p.dk_stride), N, p.dtype));
    s.state_in = ds_in_t;
    scan(s, stream);
  }
}

void local_state(const StateParams& p) {
  const auto stream = static_cast<cudaStream_t>(p.stream);
  check_decay(p, stream);
  const int D = static_cast<int>(p.qk_dim), E = static_cast<int>(p.v_dim);
  const SegmentPlan plan = plan_segments(p, E);
  ScanParams sp = base_params(p, plan);
  sp.dk = D;
  sp.dv = E;
  const bool fwd = p.kind == StateKind::kForward;
  // kForward: A = Σ λ^{N-1-t} k_tᵀ v_t, the state scan of (k=x, v=y).
  // kBackward: C = Σ c·λ^{t+1} q_tᵀ dO_t, the reversed state scan (t' = N-1-t, weight
  // λ^{N-1-t'+σ} = λ^{t+1} with σ = 1) of (k=q, v=dO) with c_state = c.
  sp.k = fwd ? operand(p.x, p.x_stride) : reversed(operand(p.x, p.x_stride), p.seqlen, p.dtype);
  sp.v = fwd ? operand(p.y, p.y_stride) : reversed(operand(p.y, p.y_stride), p.seqlen, p.dtype);
  sp.shift = fwd ? 0 : 1;
  sp.c_state = fwd ? 1.0f : p.scale;
  if (plan.num_segs > 1) {
    Workspace ws(p.batch * p.heads * plan.num_segs * D * E, stream);
    prefix_states(sp, ws.get(), nullptr, p.state, stream);
  } else {
    sp.state_out = user_state(p.state, D, E);
    scan(sp, stream);
  }
}

}  // namespace lightring::kernels::cuda
