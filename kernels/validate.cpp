// Argument checks of the kernels/ API. Every message names the field and the
// expected form, so that a user can fix the call without reading this file.
#include <cmath>

#include "core/error.h"
#include "kernels/backend.h"

namespace lightring::kernels {

namespace {

constexpr int64_t kMaxDim = 256;
constexpr int kMaxBlockSize = 256;

void check_problem(const Problem& p) {
  LR_CHECK(p.batch >= 1, "batch (B) must be >= 1 (got ", p.batch, ")");
  LR_CHECK(p.heads >= 1, "heads (H) must be >= 1 (got ", p.heads, ")");
  LR_CHECK(p.seqlen >= 1, "seqlen (N) must be >= 1 (got ", p.seqlen, ")");
  LR_CHECK(p.qk_dim >= 1 && p.qk_dim <= kMaxDim, "qk_dim (D) must be in [1, ", kMaxDim, "] (got ",
           p.qk_dim, ")");
  LR_CHECK(p.v_dim >= 1 && p.v_dim <= kMaxDim, "v_dim (E) must be in [1, ", kMaxDim, "] (got ",
           p.v_dim, ")");
  LR_CHECK(p.block_size >= 0, "block_size must be > 0, or 0 for the default (got ", p.block_size,
           ")");
  LR_CHECK(p.block_size <= kMaxBlockSize, "block_size must be <= ", kMaxBlockSize, " (got ",
           p.block_size, ")");
  LR_CHECK(std::isfinite(p.scale), "scale must be finite (got ", p.scale, ")");
  LR_CHECK(p.dtype == DType::kFloat32 || p.dtype == DType::kBFloat16 || p.dtype == DType::kFloat16,
           "dtype must be fp32, bf16 or fp16");
  if (p.device == Device::kCuda) {
    LR_CHECK(cuda_compiled(),
             "device is cuda but lightring was built without CUDA (reconfigure with nvcc "
             "available, or use the cpu backend)");
    LR_CHECK(cuda_available(), "device is cuda but no CUDA GPU is visible (use the cpu backend)");
  }
  if (p.decay != nullptr && p.device == Device::kCpu) {
    // Device pointers cannot be read here; the CUDA backend checks on the device.
    for (int64_t h = 0; h < p.heads; ++h) {
      const float s = p.decay[h];
      LR_CHECK(std::isfinite(s) && s >= 0.0f, "decay[", h, "] must be finite and >= 0 (got ", s,
               "); decay has one rate per head, shape [H]");
    }
  }
}

void check_tensor(const void* ptr, const char* name, const Strides& st, int64_t dim) {
  LR_CHECK(ptr != nullptr, name, " must not be null");
  LR_CHECK(st.batch >= 0 && st.head >= 0 && st.seq >= dim, name,
           " strides must be non-negative with seq stride >= the last dim (got batch=", st.batch,
           ", head=", st.head, ", seq=", st.seq, ", last dim ", dim, ")");
}

// The pieces of a shard with documents (kernels/documents.h).
void check_documents(const Problem& p) {
  const Documents& d = p.docs;
  if (!d.enabled()) return;
  LR_CHECK(p.batch == 1,
           "documents need batch (B) = 1: a packed stream is one sequence (got B = ", p.batch, ")");
  LR_CHECK(d.count >= 1, "docs.count must be >= 1 piece (got ", d.count, ")");
  check_cu_seqlens(d.offsets, d.count, p.seqlen, "docs.offsets");
}

}  // namespace

void validate(const ForwardParams& p) {
  check_problem(p);
  check_documents(p);
  check_tensor(p.q, "q", p.q_stride, p.qk_dim);
  check_tensor(p.k, "k", p.k_stride, p.qk_dim);
  check_tensor(p.v, "v", p.v_stride, p.v_dim);
  check_tensor(p.o, "o", p.o_stride, p.v_dim);
}

void validate(const BackwardParams& p) {
  check_problem(p);
  check_documents(p);
  check_tensor(p.q, "q", p.q_stride, p.qk_dim);
  check_tensor(p.k, "k", p.k_stride, p.qk_dim);
  check_tensor(p.v, "v", p.v_stride, p.v_dim);
  check_tensor(p.d_o, "d_o", p.do_stride, p.v_dim);
  check_tensor(p.dq, "dq", p.dq_stride, p.qk_dim);
  check_tensor(p.dk, "dk", p.dk_stride, p.qk_dim);
  check_tensor(p.dv, "dv", p.dv_stride, p.v_dim);
}

void validate(const StateParams& p) {
  check_problem(p);
  LR_CHECK(!p.docs.enabled(),
           "local_state takes no documents: ForwardPass / BackwardPass::local_state give the pair "
           "of a shard with documents");
  const bool fwd = p.kind == StateKind::kForward;
  check_tensor(p.x, fwd ? "x (k)" : "x (q)", p.x_stride, p.qk_dim);
  check_tensor(p.y, fwd ? "y (v)" : "y (d_o)", p.y_stride, p.v_dim);
  LR_CHECK(p.state != nullptr, "state output must not be null");
}

}  // namespace lightring::kernels
