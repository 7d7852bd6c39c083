// Tensor checks and the conversion of torch tensors to kernels/ params.
#include "csrc/params.h"

#ifdef LIGHTRING_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "core/error.h"

namespace lightring::csrc {

namespace {

std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream os;
  os << sizes;
  return os.str();
}

void check_rows(const at::Tensor& t, const char* name) {
  LR_CHECK(t.defined(), name, " must be a tensor (got None)");
  LR_CHECK(t.dim() == 4, name,
           " must be 4-D [B, H, N, dim] (or [B, N, H, dim] through layout='bnhd'); got shape ",
           shape_str(t.sizes()));
  LR_CHECK(t.size(3) == 1 || t.stride(3) == 1, name,
           " must have a contiguous last dim (stride 1, got ", t.stride(3),
           "); call .contiguous() first");
  LR_CHECK(t.numel() > 0, name, " must not be empty (got shape ", shape_str(t.sizes()), ")");
}

void* current_stream(const at::Device& device) {
  if (!device.is_cuda()) return nullptr;
#ifdef LIGHTRING_TORCH_CUDA
  return static_cast<void*>(c10::cuda::getCurrentCUDAStream(device.index()).stream());
#else
  LR_THROW("CUDA tensors need lightring built against a CUDA build of torch");
#endif
}

}  // namespace

kernels::DType dtype_of(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return kernels::DType::kFloat32;
    case at::kBFloat16:
      return kernels::DType::kBFloat16;
    case at::kHalf:
      return kernels::DType::kFloat16;
    default:
      break;
  }
  LR_THROW(name, " must be float32, bfloat16 or float16 (got ", t.scalar_type(), ")");
}

kernels::Problem make_problem(const at::Tensor& q, const char* q_name, const at::Tensor* k,
                              const at::Tensor& v, const char* v_name,
                              const Optional<at::Tensor>& decay, double scale, int64_t block_size) {
  check_rows(q, q_name);
  check_rows(v, v_name);
  const at::Device device = q.device();
  LR_CHECK(device.is_cpu() || device.is_cuda(), q_name, " must be on cpu or cuda (got ", device,
           ")");
  const kernels::DType dtype = dtype_of(q, q_name);
  auto same = [&](const at::Tensor& t, const char* name) {
    LR_CHECK(t.device() == device, name, " must be on the same device as ", q_name, " (got ",
             t.device(), " and ", device, ")");
    LR_CHECK(t.scalar_type() == q.scalar_type(), name, " must have the same dtype as ", q_name,
             " (got ", t.scalar_type(), " and ", q.scalar_type(), ")");
    LR_CHECK(t.sizes().slice(0, 3) == q.sizes().slice(0, 3), name,
             " must have the same [B, H, N] as ", q_name, " (got ",
             shape_str(t.sizes().slice(0, 3)), " and ", shape_str(q.sizes().slice(0, 3)), ")");
  };
  if (k != nullptr) {
    check_rows(*k, "k");
    same(*k, "k");
    LR_CHECK(k->size(3) == q.size(3), "q and k must have the same head dim D (got ", q.size(3),
             " and ", k->size(3), ")");
  }
  same(v, v_name);

  kernels::Problem p;
  p.device = device.is_cuda() ? kernels::Device::kCuda : kernels::Device::kCpu;
  p.dtype = dtype;
  p.batch = q.size(0);
  p.heads = q.size(1);
  p.seqlen = q.size(2);
  p.qk_dim = q.size(3);
  p.v_dim = v.size(3);
  p.scale = static_cast<float>(scale);
  LR_CHECK(block_size >= 0 && block_size <= 1 << 20,
           "block_size must be > 0, or 0 for the backend default (got ", block_size, ")");
  p.block_size = static_cast<int>(block_size);
  if (decay.has_value() && decay->defined()) {
    const at::Tensor& s = *decay;
    LR_CHECK(s.dim() == 1 && s.size(0) == p.heads, "decay must have shape [H] = [", p.heads,
             "], one rate per head (got shape ", shape_str(s.sizes()), ")");
    LR_CHECK(s.scalar_type() == at::kFloat, "decay must be float32 (got ", s.scalar_type(), ")");
    LR_CHECK(s.device() == device, "decay must be on the same device as ", q_name, " (got ",
             s.device(), " and ", device, ")");
    LR_CHECK(s.is_contiguous(), "decay must be contiguous");
    p.decay = s.data_ptr<float>();
  }
  p.stream = current_stream(device);
  return p;
}

void check_like(const at::Tensor& t, const char* name, const at::Tensor& like,
                const char* like_name) {
  check_rows(t, name);
  LR_CHECK(t.sizes() == like.sizes(), name, " must have the shape of ", like_name, " (got ",
           shape_str(t.sizes()), " and ", shape_str(like.sizes()), ")");
  LR_CHECK(t.scalar_type() == like.scalar_type(), name, " must have the dtype of ", like_name,
           " (got ", t.scalar_type(), " and ", like.scalar_type(), ")");
  LR_CHECK(t.device() == like.device(), name, " must be on the device of ", like_name, " (got ",
           t.device(), " and ", like.device(), ")");
}

kernels::Strides strides_of(const at::Tensor& t) {
  kernels::Strides s{t.stride(0), t.stride(1), t.stride(2)};
  // A size-1 dim is never stepped over: give it a stride the kernels accept.
  if (t.size(2) == 1) s.seq = std::max<int64_t>(s.seq, t.size(3));
  LR_CHECK(s.seq >= t.size(3), "rows of a [B, H, N, dim] tensor must not overlap (seq stride ",
           s.seq, " < dim ", t.size(3), "); call .contiguous() first");
  return s;
}

void bind_tensors(kernels::ForwardParams* p, const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& v, const at::Tensor& o) {
  p->q = q.data_ptr();
  p->k = k.data_ptr();
  p->v = v.data_ptr();
  p->o = o.data_ptr();
  p->q_stride = strides_of(q);
  p->k_stride = strides_of(k);
  p->v_stride = strides_of(v);
  p->o_stride = strides_of(o);
}

void bind_tensors(kernels::BackwardParams* p, const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& v, const at::Tensor& d_o, const at::Tensor& dq,
                  const at::Tensor& dk, const at::Tensor& dv) {
  p->q = q.data_ptr();
  p->k = k.data_ptr();
  p->v = v.data_ptr();
  p->d_o = d_o.data_ptr();
  p->dq = dq.data_ptr();
  p->dk = dk.data_ptr();
  p->dv = dv.data_ptr();
  p->q_stride = strides_of(q);
  p->k_stride = strides_of(k);
  p->v_stride = strides_of(v);
  p->do_stride = strides_of(d_o);
  p->dq_stride = strides_of(dq);
  p->dk_stride = strides_of(dk);
  p->dv_stride = strides_of(dv);
}

const float* state_ptr(const Optional<at::Tensor>& s, const char* name, const kernels::Problem& p,
                       const at::Device& device) {
  if (!s.has_value() || !s->defined()) return nullptr;
  const at::Tensor& t = *s;
  const std::vector<int64_t> want{p.batch, p.heads, p.qk_dim, p.v_dim};
  LR_CHECK(t.sizes() == at::IntArrayRef(want), name,
           " must have shape [B, H, D, E] = ", shape_str(want), " (got ", shape_str(t.sizes()),
           ")");
  LR_CHECK(t.scalar_type() == at::kFloat, name, " must be float32 whatever the input dtype (got ",
           t.scalar_type(), ")");
  LR_CHECK(t.device() == device, name, " must be on the same device as q (got ", t.device(),
           " and ", device, ")");
  LR_CHECK(t.is_contiguous(), name, " must be contiguous");
  return t.data_ptr<float>();
}

at::Tensor empty_rows_like(const at::Tensor& like, int64_t dim) {
  const auto opts = like.options();
  const int64_t B = like.size(0), H = like.size(1), N = like.size(2);
  if (like.stride(1) < like.stride(2)) {
    return at::empty({B, N, H, dim}, opts).transpose(1, 2);
  }
  return at::empty({B, H, N, dim}, opts);
}

at::Tensor empty_state(const kernels::Problem& p, const at::Device& device) {
  return at::empty({p.batch, p.heads, p.qk_dim, p.v_dim},
                   at::TensorOptions().dtype(at::kFloat).device(device));
}

}  // namespace lightring::csrc
