// CPU ForwardPass / BackwardPass (kernels/attention.h): the reference form of
// the two phases, not a fast path. Phase 1 does nothing; local_state() is the
// local pair of §3 from kernels/cpu/local_state.cpp, computed on first use; finish()
// is the one-shot forward / backward with the entering state:
//
//     forward:  o, S_{N-1} = forward(q, k, v, S0 = s0)      A = local_state(k, v)
//     backward: dq, dk, dv, dS0 = backward(..., G)          C = local_state(q, dO)
//
// Both are exact restatements of §1, so the pair and the outputs agree with the
// one-shot entry points bit for bit. With packed documents the pair is the forward's final state
// from a zero S_in (resp. the backward's dS_in from a zero G): a whole forward (backward) into
// scratch outputs, since the documents' initial states (final-state gradients) enter it.
#include <vector>

#include "kernels/backend.h"

namespace lightring::kernels::cpu {

namespace {

// Bytes of a [B, H, N, dim] scratch output of p's element type.
size_t scratch_bytes(const Problem& p, int64_t dim) {
  return static_cast<size_t>(p.batch * p.heads * p.seqlen * dim) * dtype_size(p.dtype);
}

StateParams pair_params(const Problem& p, StateKind kind, const void* x, Strides xs, const void* y,
                        Strides ys, float* out) {
  StateParams sp;
  static_cast<Problem&>(sp) = p;
  sp.kind = kind;
  sp.x = x;
  sp.y = y;
  sp.x_stride = xs;
  sp.y_stride = ys;
  sp.state = out;
  return sp;
}

class CpuForwardPass final : public ForwardPass::Impl {
 public:
  explicit CpuForwardPass(const ForwardParams& p) : p_(p) {}

  const float* local_state() override {
    if (pair_.empty()) {
      pair_.resize(state_count(p_));
      if (p_.docs.enabled()) {
        std::vector<char> o(scratch_bytes(p_, p_.v_dim));
        ForwardParams f = p_;
        f.o = o.data();
        f.o_stride = contiguous_bhnd(p_.heads, p_.seqlen, p_.v_dim);
        f.initial_state = nullptr;
        f.final_state = pair_.data();
        f.doc_final_states = nullptr;
        cpu::forward(f);
      } else {
        cpu::local_state(pair_params(p_, StateKind::kForward, p_.k, p_.k_stride, p_.v, p_.v_stride,
                                     pair_.data()));
      }
    }
    return pair_.data();
  }

  void finish(const float* initial_state, float* final_state) override {
    ForwardParams f = p_;
    f.initial_state = initial_state;
    f.final_state = final_state;
    cpu::forward(f);
  }

 private:
  ForwardParams p_;
  std::vector<float> pair_;  // A, empty until asked for
};

class CpuBackwardPass final : public BackwardPass::Impl {
 public:
  explicit CpuBackwardPass(const BackwardParams& p) : p_(p) {}

  const float* local_state() override {
    if (pair_.empty()) {
      pair_.resize(state_count(p_));
      if (p_.docs.enabled()) {
        std::vector<char> dq(scratch_bytes(p_, p_.qk_dim)), dk(dq.size()),
            dv(scratch_bytes(p_, p_.v_dim));
        BackwardParams b = p_;
        b.dq = dq.data();
        b.dk = dk.data();
        b.dv = dv.data();
        b.dq_stride = b.dk_stride = contiguous_bhnd(p_.heads, p_.seqlen, p_.qk_dim);
        b.dv_stride = contiguous_bhnd(p_.heads, p_.seqlen, p_.v_dim);
        b.d_final_state = nullptr;
        b.d_initial_state = pair_.data();
        b.d_doc_initial_states = nullptr;
        cpu::backward(b);
      } else {
        cpu::local_state(pair_params(p_, StateKind::kBackward, p_.q, p_.q_stride, p_.d_o,
                                     p_.do_stride, pair_.data()));
      }
    }
    return pair_.data();
  }

  void finish(const float* d_final_state, float* d_initial_state) override {
    BackwardParams b = p_;
    b.d_final_state = d_final_state;
    b.d_initial_state = d_initial_state;
    cpu::backward(b);
  }

 private:
  BackwardParams p_;
  std::vector<float> pair_;  // C, empty until asked for
};

}  // namespace

std::unique_ptr<ForwardPass::Impl> forward_pass(const ForwardParams& p) {
  return std::make_unique<CpuForwardPass>(p);
}

std::unique_ptr<BackwardPass::Impl> backward_pass(const BackwardParams& p) {
  return std::make_unique<CpuBackwardPass>(p);
}

}  // namespace lightring::kernels::cpu
