// CUDA backend entry points: forward, backward, local_state and the two-phase
// ForwardPass / BackwardPass (kernels/attention.h), as scans (scan.h) over
// views of the inputs with the segment schedule of docs/algorithm.md §3 inside
// the GPU (segments.h):
//
//   1. state pass: each (b·h, segment) computes its local pair X_g from zero;
//   2. combine:    X_in(g) = init ⊕ (a_0, X_0) ⊕ … ⊕ (a_{g-1}, X_{g-1});
//   3. main pass:  each segment runs the block form from X_in(g).
//
// Segments follow the wave cost model of backend.cu (plan_segments); when
// B·H·slices alone fills the GPU (G = 1) steps 1–2 are skipped and the main
// pass reads the initial state and writes the final state itself.
//
// Fused (the one-shot forward and dQ, where the wgmma family runs; scan.h:
// fused_runs): steps 1–3 are one kernel, each segment's CTA computing its local
// pair, taking the entering state from its predecessor through a chain and
// publishing its own, then running the main pass (scan_wgmma.cuh, Mode::kFused).
// dV and dK keep steps 1–3: they share one dS prefix.
//
// Two phases (sequence parallel): steps 1–2 run from init = 0 before the
// entering state s0 is known, giving the zero-initial entering states and, as
// the state after the shard, the local pair; when s0 arrives, seed_segments
// adds λ^{g·seg_len}·s0 to every entering state (the combine is linear in its
// init) and writes λ^N·s0 + pair as the final state, then step 3 runs. With
// G = 1 the pair is one state pass, run only when asked for, and step 3 takes
// s0 directly. Either way each input is read by one state pass at most.
//
// Block size: the CUDA kernels always use 64-row chunks. Any block_size the
// caller passes (1..256) is accepted and gives the same function; results
// differ from another block size only by fp32 rounding of the same sums.
//
// Decay: `decay` is a device pointer here; its values are copied to the host
// and checked (finite, >= 0) before any launch, except while the stream is
// being captured into a CUDA graph (then the check is skipped). A pass checks
// once, in phase 1. The copy synchronises the stream, so by default a decay
// array is checked the first time its pointer is seen on a device only
// (segments.h: check_decay; KernelTuning::check_decay_every_call).
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "kernels/backend.h"
#include "kernels/cuda/doc_chunks.h"
#include "kernels/cuda/family.h"
#include "kernels/cuda/segments.h"

namespace lightring::kernels::cuda {

namespace {

// Zeroes a [B,H,D,E] fp32 state of p (null: nothing).
void zero_state(float* s, const Problem& p, cudaStream_t stream) {
  if (s) LR_CUDA_CHECK(cudaMemsetAsync(s, 0, state_count(p) * sizeof(float), stream));
}

// Every row of a 16-bit operand starts 16-byte aligned (what the wgmma family needs).
bool rows_aligned16(const void* ptr, const Strides& s) {
  const auto bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr)) |
                    static_cast<uint64_t>(s.batch * 2) | static_cast<uint64_t>(s.head * 2) |
                    static_cast<uint64_t>(s.seq * 2);
  return (bits & 15) == 0;
}

// Whether the documents of p run inside the scans (KernelTuning::documents_path): only the wgmma
// family's chunk loop reads the chunk table (scan.h: DocChunks), so every scan of the call must
// run it (both dims and, checked by the callers, every input's rows aligned).
bool documents_in_scans(const Problem& p, bool inputs_aligned) {
  if (!p.docs.enabled() || kernel_tuning().documents_path == KernelTuning::DocumentsPath::kPieces)
    return false;
  return inputs_aligned &&
         wgmma_covers(p.dtype, static_cast<int>(p.qk_dim), static_cast<int>(p.v_dim)) &&
         wgmma_covers(p.dtype, static_cast<int>(p.v_dim), static_cast<int>(p.qk_dim));
}

// A forward-direction scan (scan.h): q, k, v into out with kernel dims dk × dv, scales (c, c, 1),
// σ = 0: the forward's output scan and dQ's.
ScanParams forward_scan(const Problem& p, const SegmentPlan& plan, const Operand& q,
                        const Operand& k, const Operand& v, const Operand& out, int64_t dk,
                        int64_t dv) {
  ScanParams sp = base_params(p, plan);
  sp.dk = static_cast<int>(dk);
  sp.dv = static_cast<int>(dv);
  sp.q = q;
  sp.k = k;
  sp.v = v;
  set_output(&sp, out);
  sp.c_intra = sp.c_inter = p.scale;
  sp.c_state = 1.0f;
  sp.shift = 0;
  return sp;
}

// The fused single-pass scan of sp (scan.h: fused_runs) from init to final (either unset),
// its chain in ws (fused_workspace_floats(sp) floats).
void run_fused(ScanParams sp, float* ws, const StateRef& init, const StateRef& final,
               cudaStream_t stream) {
  sp.chain = fused_chain(ws, sp);
  sp.state_in = init;
  sp.state_out = final;
  scan(sp, stream);
}

// The scans of one forward: output pass q=Q, k=K, v=V, X=S, σ=0, (c, c, 1);
// its state pass reads k=K, v=V only. allow_fused: with several segments, the fused
// single-pass scan runs instead of state pass + combine + output pass where it can
// (scan.h: fused_runs), on the same segments.
class ForwardScans {
 public:
  explicit ForwardScans(const ForwardParams& p, bool allow_fused = false)
      : p_(p), stream_(static_cast<cudaStream_t>(p.stream)) {
    check_decay(p_, stream_);
    plan_ = plan_segments(p_, static_cast<int>(p_.v_dim));
    if (p_.docs.enabled()) {
      tables_.emplace(p_.docs, p_.seqlen, plan_.num_segs, stream_);
      plan_.num_segs = tables_->num_segs();
    }
    fused_ = allow_fused && segmented() && fused_runs(view());
    if (fused_) {
      ws_.emplace(fused_workspace_floats(view()), stream_);
    } else if (segmented()) {
      ws_.emplace(state_count(p_) * plan_.num_segs, stream_);
    }
  }

  bool segmented() const { return plan_.num_segs > 1; }
  bool runs_fused() const { return fused_; }

  // The fused scan from init (may be null) writing final_out (may be null).
  void fused(const float* init, float* final_out) {
    run_fused(view(), ws_->get(), user_state(init, p_.qk_dim, p_.v_dim),
              user_state(final_out, p_.qk_dim, p_.v_dim), stream_);
  }

  // Several segments: state pass and combine from init into the workspace;
  // final_out (may be null) gets the state after the shard.
  void prefix(const float* init, float* final_out) {
    prefix_states(view(), ws_->get(), init, final_out, stream_);
  }

  // Several segments, after prefix(nullptr, local_final): adds s0 (may be null).
  void seed(const float* s0, const float* local_final, float* final_out) {
    seed_segments(ws_->get(), p_, plan_, s0, local_final, final_out, stream_, view().docs.segs);
  }

  // One segment: A = Σ λ^{N-1-t} k_tᵀ v_t, one state pass from zero into out.
  void pair(float* out) {
    ScanParams sp = view();
    sp.o = nullptr;
    sp.state_out = user_state(out, p_.qk_dim, p_.v_dim);
    scan(sp, stream_);
  }

  // The output pass. One segment: from init, writing final_out (either may be
  // null). Several: from the entering states prefix()/seed() left in the
  // workspace (init and final_out went there, and must be null here).
  void output(const float* init, float* final_out) {
    ScanParams sp = view();
    if (segmented()) {
      sp.state_in = segment_states(ws_->get(), plan_.num_segs, sp.dk, sp.dv);
    } else {
      sp.state_in = user_state(init, p_.qk_dim, p_.v_dim);
      sp.state_out = user_state(final_out, p_.qk_dim, p_.v_dim);
    }
    scan(sp, stream_);
  }

 private:
  ScanParams view() const {
    ScanParams sp =
        forward_scan(p_, plan_, operand(p_.q, p_.q_stride), operand(p_.k, p_.k_stride),
                     operand(p_.v, p_.v_stride), operand(p_.o, p_.o_stride), p_.qk_dim, p_.v_dim);
    if (tables_)
      sp.docs = tables_->forward(doc_states(p_.doc_initial_states, p_.heads, p_.qk_dim, p_.v_dim),
                                 doc_states(p_.doc_final_states, p_.heads, p_.qk_dim, p_.v_dim));
    return sp;
  }

  ForwardParams p_;
  cudaStream_t stream_;
  SegmentPlan plan_;
  std::optional<DocTables> tables_;  // packed documents: the chunk tables
  bool fused_ = false;
  // Several segments: [B·H, G, D, E] entering states, or the fused scan's chain.
  std::optional<Workspace> ws_;
};

// The scans of one backward (scan.h):
//   dQ: q=dO, k=V,  v=K,  X=Sᵀ,  σ=0, (c, c, 1)             from S_in = initial_state
//   dV: q=K,  k=Q,  v=dO, X=dS,  σ=1, (c, 1, c), reversed   from G, writes dS0
//   dK: q=V,  k=dO, v=Q,  X=dSᵀ, σ=1, (c, 1, c), reversed   from G
// The dS state pass reads the reversed (k=Q, v=dO): its pair is C.
class BackwardScans {
 public:
  // dQ runs as a fused scan wherever it can (dq). dV and dK do not: they share one dS prefix
  // (one state pass over Q, dO), where fused scans would each run its state phase (slower;
  // measured in bench/NOTES.md).
  explicit BackwardScans(const BackwardParams& p)
      : p_(p), stream_(static_cast<cudaStream_t>(p.stream)) {
    check_decay(p_, stream_);
    plan_ = plan_segments(p_, static_cast<int>(std::max(p_.qk_dim, p_.v_dim)));
    if (p_.docs.enabled()) {
      tables_.emplace(p_.docs, p_.seqlen, plan_.num_segs, stream_);
      plan_.num_segs = tables_->num_segs();
    }
    if (segmented()) ws_ds_.emplace(state_count(p_) * plan_.num_segs, stream_);
  }

  bool segmented() const { return plan_.num_segs > 1; }

  // dQ = c[(dO Vᵀ ⊙ M) K + Λ dO S(i)ᵀ]: the forward scan of (q=dO, k=V, v=K) with X = Sᵀ, from
  // p.initial_state. Several segments: the fused scan where it runs, else the S prefix (state
  // scan of k=K, v=V, X = S [D][E]) in a workspace that lives for this pass only. Runs on
  // `stream` (the pass's stream by default).
  void dq(cudaStream_t stream = nullptr) {
    if (!stream) stream = stream_;
    const int D = static_cast<int>(p_.qk_dim), E = static_cast<int>(p_.v_dim);
    ScanParams sp =
        forward_scan(p_, plan_, operand(p_.d_o, p_.do_stride), operand(p_.v, p_.v_stride),
                     operand(p_.k, p_.k_stride), operand(p_.dq, p_.dq_stride), E, D);
    if (tables_)
      sp.docs = tables_->forward(doc_states(p_.doc_initial_states, p_.heads, E, D, true), {});
    std::optional<Workspace> ws_s;
    if (segmented() && fused_runs(sp)) {  // its state phase over (k=V, v=K) gives Sᵀ itself
      ws_s.emplace(fused_workspace_floats(sp), stream);
      run_fused(sp, ws_s->get(), user_state(p_.initial_state, E, D, /*transposed=*/true),
                StateRef{}, stream);
      return;
    }
    if (segmented()) {
      ws_s.emplace(state_count(p_) * plan_.num_segs, stream);
      ScanParams st = sp;
      st.dk = D;
      st.dv = E;
      st.k = operand(p_.k, p_.k_stride);
      st.v = operand(p_.v, p_.v_stride);
      if (tables_)
        st.docs = tables_->forward(doc_states(p_.doc_initial_states, p_.heads, D, E), {});
      prefix_states(st, ws_s->get(), p_.initial_state, nullptr, stream);
      sp.state_in = segment_states(ws_s->get(), plan_.num_segs, E, D, /*transposed=*/true);
    } else {
      sp.state_in = user_state(p_.initial_state, E, D, /*transposed=*/true);
    }
    scan(sp, stream);
  }

  // Several segments: the dS state pass and combine from g (the reversed view's init) into the
  // workspace; final_out (may be null) gets dS before the shard (dS0 of the shard).
  // With documents whose first piece starts a document (!continues) S_in is not read: dS_in
  // (final_out here, the pair and d_initial_state below) is 0, not the reversed view's last state
  // (which is that document's dS0).
  void ds_prefix(const float* g, float* final_out, cudaStream_t stream = nullptr) {
    if (!stream) stream = stream_;
    prefix_states(ds_state_view(), ws_ds_->get(), g, reads_s_in() ? final_out : nullptr, stream);
    if (!reads_s_in()) zero_state(final_out, p_, stream);
  }

  // Several segments, after ds_prefix(nullptr, local_final): adds G (may be null).
  void seed(const float* g, const float* local_final, float* final_out) {
    seed_segments(ws_ds_->get(), p_, plan_, g, local_final, reads_s_in() ? final_out : nullptr,
                  stream_, ds_state_view().docs.segs);
    if (!reads_s_in()) zero_state(final_out, p_, stream_);
  }

  // One segment: C = Σ c·λ^{t+1} q_tᵀ dO_t, one reversed state pass from zero into out.
  void pair(float* out) {
    if (!reads_s_in()) return zero_state(out, p_, stream_);
    ScanParams sp = ds_state_view();
    sp.state_out = user_state(out, p_.qk_dim, p_.v_dim);
    scan(sp, stream_);
  }

  // dV and dK. One segment: from g, dV's scan writing ds0_out (either may be null). Several: from
  // the entering states ds_prefix()/seed() left in the workspace (g and ds0_out must be null).
  void dv_dk(const float* g, float* ds0_out) {
    const int D = static_cast<int>(p_.qk_dim), E = static_cast<int>(p_.v_dim);
    ScanParams dv = dv_scan(), dk = dk_scan();
    if (segmented()) {
      dv.state_in = segment_states(ws_ds_->get(), plan_.num_segs, D, E);
      dk.state_in = segment_states(ws_ds_->get(), plan_.num_segs, E, D, /*transposed=*/true);
    } else {
      dv.state_in = user_state(g, D, E);
      dk.state_in = user_state(g, E, D, /*transposed=*/true);
      dv.state_out = user_state(reads_s_in() ? ds0_out : nullptr, D, E);
      if (!reads_s_in()) zero_state(ds0_out, p_, stream_);
    }
    scan(dv, stream_);
    scan(dk, stream_);
  }

 private:
  bool reads_s_in() const { return !p_.docs.enabled() || p_.docs.continues; }

  // The reversed views' documents: dS enters a document at its last row from the gradient of its
  // final state (init) and leaves at its first row as the gradient of its initial state (final).
  DocChunks reversed_docs(int64_t rows, int64_t cols, bool transposed, bool with_final) const {
    if (!tables_) return DocChunks{};
    return tables_->reversed(
        doc_states(p_.d_doc_final_states, p_.heads, rows, cols, transposed),
        with_final ? doc_states(p_.d_doc_initial_states, p_.heads, rows, cols) : DocStates{});
  }

  // dV = c[(Q Kᵀ ⊙ M)ᵀ dO] + Γ K dS(i+1): q=K, k=Q, v=dO, X = dS, reversed.
  ScanParams dv_scan() const {
    ScanParams s = reversed_scan(p_.qk_dim, p_.v_dim, {p_.k, p_.k_stride}, {p_.q, p_.q_stride},
                                 {p_.d_o, p_.do_stride}, {p_.dv, p_.dv_stride});
    s.docs = reversed_docs(p_.qk_dim, p_.v_dim, false, true);
    return s;
  }

  // dK = c[(dO Vᵀ ⊙ M)ᵀ Q] + Γ V dS(i+1)ᵀ: q=V, k=dO, v=Q, X = dSᵀ, reversed.
  ScanParams dk_scan() const {
    ScanParams s = reversed_scan(p_.v_dim, p_.qk_dim, {p_.v, p_.v_stride}, {p_.d_o, p_.do_stride},
                                 {p_.q, p_.q_stride}, {p_.dk, p_.dk_stride});
    s.docs = reversed_docs(p_.v_dim, p_.qk_dim, true, false);
    return s;
  }

  struct View {
    const void* ptr;
    Strides stride;
  };

  // The reversed scan of (q, k, v) into out, kernel dims dk × dv.
  ScanParams reversed_scan(int64_t dk, int64_t dv, View q, View k, View v, View out) const {
    const auto rev = [&](const View& x) {
      return reversed(operand(x.ptr, x.stride), p_.seqlen, p_.dtype);
    };
    ScanParams s = reversed_base();
    s.dk = static_cast<int>(dk);
    s.dv = static_cast<int>(dv);
    s.q = rev(q);
    s.k = rev(k);
    s.v = rev(v);
    set_output(&s, rev(out));
    return s;
  }

  // The reversed scans' scales and shift: (c, 1, c), σ = 1.
  ScanParams reversed_base() const {
    ScanParams sp = base_params(p_, plan_);
    sp.c_intra = p_.scale;
    sp.c_inter = 1.0f;
    sp.c_state = p_.scale;
    sp.shift = 1;
    return sp;
  }

  // The dS state pass: reversed (k=Q, v=dO), X = dS [D][E], no output rows.
  ScanParams ds_state_view() const {
    ScanParams st = reversed_base();
    st.dk = static_cast<int>(p_.qk_dim);
    st.dv = static_cast<int>(p_.v_dim);
    st.k = reversed(operand(p_.q, p_.q_stride), p_.seqlen, p_.dtype);
    st.v = reversed(operand(p_.d_o, p_.do_stride), p_.seqlen, p_.dtype);
    st.o = nullptr;
    st.docs = reversed_docs(p_.qk_dim, p_.v_dim, false, false);
    return st;
  }

  BackwardParams p_;
  cudaStream_t stream_;
  SegmentPlan plan_;
  std::optional<DocTables> tables_;  // packed documents: the chunk tables
  std::optional<Workspace> ws_ds_;   // [B·H, G, D, E] dS entering the segments (several segments)
};

class CudaForwardPass final : public ForwardPass::Impl {
 public:
  explicit CudaForwardPass(const ForwardParams& p)
      : scans_(p), count_(state_count(p)), stream_(static_cast<cudaStream_t>(p.stream)) {
    if (scans_.segmented()) {
      pair_.emplace(count_, stream_);
      scans_.prefix(nullptr, pair_->get());  // entering states from 0; A after the shard
    }
  }

  const float* local_state() override {
    if (!pair_) {
      pair_.emplace(count_, stream_);
      scans_.pair(pair_->get());
    }
    return pair_->get();
  }

  void finish(const float* initial_state, float* final_state) override {
    if (scans_.segmented()) {
      scans_.seed(initial_state, pair_->get(), final_state);
      scans_.output(nullptr, nullptr);
    } else {
      scans_.output(initial_state, final_state);
    }
  }

 private:
  ForwardScans scans_;
  size_t count_;
  cudaStream_t stream_;
  std::optional<Workspace> pair_;  // A [B,H,D,E]
};

// Phase 1 computes the dS pair (the state pass over Q, dO and its combine) and dQ, which needs
// neither the pair nor the exchange, on two side streams forked from the pass's stream: the pair
// on a high-priority stream, which the pass's stream then waits for, so that the
// sequence-parallel runtime enqueues the exchange of the pair behind the pair alone and the
// transfer runs while dQ (default priority) computes; finish() (or the destructor) joins dQ.
// The measurements behind this order are in bench/NOTES.md.
class CudaBackwardPass final : public BackwardPass::Impl {
 public:
  explicit CudaBackwardPass(const BackwardParams& p)
      : scans_(p), count_(state_count(p)), stream_(static_cast<cudaStream_t>(p.stream)) {
    if (scans_.segmented()) pair_.emplace(count_, stream_);
    LR_CUDA_CHECK(cudaEventRecord(fork_.get(), stream_));
    const cudaStream_t low = side_stream(false);
    LR_CUDA_CHECK(cudaStreamWaitEvent(low, fork_.get(), 0));
    scans_.dq(low);
    LR_CUDA_CHECK(cudaEventRecord(joined_.get(), low));
    if (scans_.segmented()) {
      const cudaStream_t high = side_stream(true);
      LR_CUDA_CHECK(cudaStreamWaitEvent(high, fork_.get(), 0));
      scans_.ds_prefix(nullptr, pair_->get(), high);  // dS entering the segments from 0; C
      LR_CUDA_CHECK(cudaEventRecord(pair_done_.get(), high));
      LR_CUDA_CHECK(cudaStreamWaitEvent(stream_, pair_done_.get(), 0));
    }
  }

  ~CudaBackwardPass() override {
    // Later work on the pass's stream (frees included) stays behind dQ (no throw here).
    if (!joined_once_) cudaStreamWaitEvent(stream_, joined_.get(), 0);
  }

  const float* local_state() override {
    if (!pair_) {
      pair_.emplace(count_, stream_);
      scans_.pair(pair_->get());
    }
    return pair_->get();
  }

  void finish(const float* d_final_state, float* d_initial_state) override {
    join();
    if (scans_.segmented()) {
      scans_.seed(d_final_state, pair_->get(), d_initial_state);
      scans_.dv_dk(nullptr, nullptr);
    } else {
      scans_.dv_dk(d_final_state, d_initial_state);
    }
  }

 private:
  void join() {
    if (joined_once_) return;
    joined_once_ = true;
    LR_CUDA_CHECK(cudaStreamWaitEvent(stream_, joined_.get(), 0));
  }

  BackwardScans scans_;
  size_t count_;
  cudaStream_t stream_;
  PooledEvent fork_, joined_, pair_done_;  // per-device pool: no create/destroy per pass
  bool joined_once_ = false;
  std::optional<Workspace> pair_;  // C [B,H,D,E]
};

}  // namespace

bool runs_documents(const ForwardParams& p) {
  return documents_in_scans(p, rows_aligned16(p.q, p.q_stride) && rows_aligned16(p.k, p.k_stride) &&
                                   rows_aligned16(p.v, p.v_stride));
}

bool runs_documents(const BackwardParams& p) {
  return documents_in_scans(p, rows_aligned16(p.q, p.q_stride) && rows_aligned16(p.k, p.k_stride) &&
                                   rows_aligned16(p.v, p.v_stride) &&
                                   rows_aligned16(p.d_o, p.do_stride));
}

void forward(const ForwardParams& p) {
  ForwardScans f(p, /*allow_fused=*/true);
  if (f.runs_fused()) {
    f.fused(p.initial_state, p.final_state);
  } else if (f.segmented()) {
    f.prefix(p.initial_state, p.final_state);
    f.output(nullptr, nullptr);
  } else {
    f.output(p.initial_state, p.final_state);
  }
}

void backward(const BackwardParams& p) {
  BackwardScans b(p);
  b.dq();
  if (b.segmented()) {
    b.ds_prefix(p.d_final_state, p.d_initial_state);
    b.dv_dk(nullptr, nullptr);
  } else {
    b.dv_dk(p.d_final_state, p.d_initial_state);
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
    Workspace ws(state_count(p) * plan.num_segs, stream);
    prefix_states(sp, ws.get(), nullptr, p.state, stream);
  } else {
    sp.state_out = user_state(p.state, D, E);
    scan(sp, stream);
  }
}

std::unique_ptr<ForwardPass::Impl> forward_pass(const ForwardParams& p) {
  return std::make_unique<CudaForwardPass>(p);
}

std::unique_ptr<BackwardPass::Impl> backward_pass(const BackwardParams& p) {
  return std::make_unique<CudaBackwardPass>(p);
}

}  // namespace lightring::kernels::cuda
