// Runs the CUDA backend on a test Problem (common/run_cpu.h): device buffers,
// NaN-poisoned outputs, optional [B, N, H, D] layout, and the results copied
// back as float64 for comparison with the oracle.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/run_cpu.h"
#include "kernels/attention.h"

namespace lightring::test {

#define ASSERT_CUDA(call) ASSERT_EQ((call), cudaSuccess) << cudaGetErrorString(cudaGetLastError())

// Owns one device allocation; never copied.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes && cudaMalloc(&ptr_, bytes) != cudaSuccess)
      throw std::runtime_error("cudaMalloc failed");
  }
  DeviceBuffer(const void* host, size_t bytes) : DeviceBuffer(bytes) { upload(host); }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  void upload(const void* host) {
    if (cudaMemcpy(ptr_, host, bytes_, cudaMemcpyHostToDevice) != cudaSuccess)
      throw std::runtime_error("cudaMemcpy H2D failed");
  }
  void download(void* host) const {
    if (cudaMemcpy(host, ptr_, bytes_, cudaMemcpyDeviceToHost) != cudaSuccess)
      throw std::runtime_error("cudaMemcpy D2H failed");
  }
  void* get() const { return ptr_; }
  float* f() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A [B,H,N,dim] tensor in the chosen layout: values are given [B,H,N,dim] contiguous.
struct LaidOut {
  HostTensor host;
  kernels::Strides strides;
};
inline LaidOut lay_out(const HostTensor& t, const Shape& s, int64_t dim, bool bnhd) {
  if (!bnhd) return {t, kernels::contiguous_bhnd(s.H, s.N, dim)};
  HostTensor out(t.dtype(), t.numel());
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t j = 0; j < dim; ++j)
          out.set(((b * s.N + n) * s.H + h) * dim + j, t.get(((b * s.H + h) * s.N + n) * dim + j));
  return {out, kernels::contiguous_bnhd(s.H, s.N, dim)};
}
// Back to [B,H,N,dim] float64.
inline std::vector<double> to_bhnd(const HostTensor& t, const Shape& s, int64_t dim, bool bnhd) {
  if (!bnhd) return t.to_double();
  std::vector<double> out(t.numel());
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t j = 0; j < dim; ++j)
          out[((b * s.H + h) * s.N + n) * dim + j] = t.get(((b * s.N + n) * s.H + h) * dim + j);
  return out;
}

inline HostTensor poisoned(DType dtype, size_t numel) {
  HostTensor t(dtype, numel);
  t.poison();
  return t;
}

struct CudaResults {
  std::vector<double> o, final_state, dq, dk, dv, ds0, state_fwd, state_bwd;
};

// The float64 oracle's value of every output of run_cuda (forward, gradients, local pairs).
inline CudaResults oracle_results(const Problem& pr) {
  const Shape& s = pr.shape;
  const OracleOut ref = oracle_forward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0);
  const OracleGrad gref =
      oracle_backward(s, pr.qd, pr.kd, pr.vd, pr.decay, pr.scale, pr.s0, pr.dod, pr.g);
  CudaResults r{ref.o, ref.final_state, gref.dq, gref.dk, gref.dv, gref.ds0, {}, {}};
  oracle_local_states(pr, &r.state_fwd, &r.state_bwd);
  return r;
}

// Every output of `got` within relative error tol of `want`; `what` names the comparison.
inline void expect_results_close(const CudaResults& got, const CudaResults& want, double tol,
                                 const std::string& what) {
  EXPECT_LT(rel_err(got.o, want.o), tol) << "o " << what;
  EXPECT_LT(rel_err(got.final_state, want.final_state), tol) << "final_state " << what;
  EXPECT_LT(rel_err(got.dq, want.dq), tol) << "dq " << what;
  EXPECT_LT(rel_err(got.dk, want.dk), tol) << "dk " << what;
  EXPECT_LT(rel_err(got.dv, want.dv), tol) << "dv " << what;
  EXPECT_LT(rel_err(got.ds0, want.ds0), tol) << "ds0 " << what;
  EXPECT_LT(rel_err(got.state_fwd, want.state_fwd), tol) << "A (forward local pair) " << what;
  EXPECT_LT(rel_err(got.state_bwd, want.state_bwd), tol) << "C (backward local pair) " << what;
}

// Copies every output of run_cuda back to the host as [B,H,N,dim] / state float64.
inline CudaResults download_results(const Problem& pr, bool bnhd, const DeviceBuffer& o,
                                    const DeviceBuffer& dq, const DeviceBuffer& dk,
                                    const DeviceBuffer& dv, const DeviceBuffer& fs,
                                    const DeviceBuffer& ds0, const DeviceBuffer& sf,
                                    const DeviceBuffer& sb) {
  const Shape& s = pr.shape;
  const size_t nd = s.B * s.H * s.N * s.D, ne = s.B * s.H * s.N * s.E, de = s.B * s.H * s.D * s.E;
  HostTensor ho(pr.dtype, ne), hdq(pr.dtype, nd), hdk(pr.dtype, nd), hdv(pr.dtype, ne);
  o.download(ho.data());
  dq.download(hdq.data());
  dk.download(hdk.data());
  dv.download(hdv.data());
  std::vector<float> hfs(de), hds0(de), hsf(de), hsb(de);
  fs.download(hfs.data());
  ds0.download(hds0.data());
  sf.download(hsf.data());
  sb.download(hsb.data());
  return {to_bhnd(ho, s, s.E, bnhd),
          to_double(hfs),
          to_bhnd(hdq, s, s.D, bnhd),
          to_bhnd(hdk, s, s.D, bnhd),
          to_bhnd(hdv, s, s.E, bnhd),
          to_double(hds0),
          to_double(hsf),
          to_double(hsb)};
}

// Sets kernels::KernelTuning for one scope and restores the previous one.
class ScopedTuning {
 public:
  explicit ScopedTuning(const kernels::KernelTuning& t) : saved_(kernels::kernel_tuning()) {
    kernels::set_kernel_tuning(t);
  }
  ~ScopedTuning() { kernels::set_kernel_tuning(saved_); }
  ScopedTuning(const ScopedTuning&) = delete;
  ScopedTuning& operator=(const ScopedTuning&) = delete;

 private:
  kernels::KernelTuning saved_;
};

// Forces the segment length for one scope (many segments at small N); 0 keeps the plan.
class ScopedSegLen {
 public:
  explicit ScopedSegLen(int64_t seg_len) : tuning_(with_seg_len(seg_len)) {}

 private:
  static kernels::KernelTuning with_seg_len(int64_t seg_len) {
    kernels::KernelTuning t = kernels::kernel_tuning();
    t.segment_len = seg_len;
    return t;
  }
  ScopedTuning tuning_;
};

// Runs the 16-bit scans on one family for one scope (kAuto: the fastest the GPU has).
class ScopedFamily {
 public:
  explicit ScopedFamily(kernels::KernelTuning::Family f) : tuning_(with_family(f)) {}

 private:
  static kernels::KernelTuning with_family(kernels::KernelTuning::Family f) {
    kernels::KernelTuning t = kernels::kernel_tuning();
    t.family = f;
    return t;
  }
  ScopedTuning tuning_;
};

// How run_cuda drives the backend: the one-shot forward / backward / local_state
// entry points, or the two-phase ForwardPass / BackwardPass (kernels/attention.h)
// in the order the sequence-parallel runtime uses them: construct, local_state()
// (the pair, copied out), then finish() with the initial state / G.
enum class Run { kOneShot, kTwoPhase };

// Forward (final state), backward (dS0) and both local states on the GPU.
inline CudaResults run_cuda(const Problem& pr, bool bnhd, int block_size = 0,
                            Run run = Run::kOneShot) {
  const Shape& s = pr.shape;
  const size_t nd = s.B * s.H * s.N * s.D, ne = s.B * s.H * s.N * s.E, de = s.B * s.H * s.D * s.E;
  const size_t es = kernels::dtype_size(pr.dtype);
  const LaidOut q = lay_out(pr.q, s, s.D, bnhd), k = lay_out(pr.k, s, s.D, bnhd);
  const LaidOut v = lay_out(pr.v, s, s.E, bnhd), dout = lay_out(pr.dout, s, s.E, bnhd);
  DeviceBuffer dq_in(q.host.data(), nd * es), dk_in(k.host.data(), nd * es);
  DeviceBuffer dv_in(v.host.data(), ne * es), ddo_in(dout.host.data(), ne * es);
  DeviceBuffer d_decay, d_s0, d_g;
  if (!pr.decay_f.empty()) d_decay = DeviceBuffer(pr.decay_f.data(), s.H * sizeof(float));
  if (!pr.s0_f.empty()) d_s0 = DeviceBuffer(pr.s0_f.data(), de * sizeof(float));
  if (!pr.g_f.empty()) d_g = DeviceBuffer(pr.g_f.data(), de * sizeof(float));

  const HostTensor pe = poisoned(pr.dtype, ne), pd = poisoned(pr.dtype, nd);
  const std::vector<float> pstate(de, std::nanf(""));
  DeviceBuffer o(pe.data(), ne * es), dq(pd.data(), nd * es), dk(pd.data(), nd * es),
      dv(pe.data(), ne * es);
  DeviceBuffer fs(pstate.data(), de * 4), ds0(pstate.data(), de * 4), sf(pstate.data(), de * 4),
      sb(pstate.data(), de * 4);

  auto fill = [&](kernels::Problem* p) {
    p->device = kernels::Device::kCuda;
    p->dtype = pr.dtype;
    p->batch = s.B;
    p->heads = s.H;
    p->seqlen = s.N;
    p->qk_dim = s.D;
    p->v_dim = s.E;
    p->decay = d_decay.f();
    p->scale = static_cast<float>(pr.scale);
    p->block_size = block_size;
  };
  kernels::ForwardParams f;
  fill(&f);
  f.q = dq_in.get();
  f.k = dk_in.get();
  f.v = dv_in.get();
  f.o = o.get();
  f.q_stride = q.strides;
  f.k_stride = k.strides;
  f.v_stride = v.strides;
  f.o_stride = v.strides;
  f.initial_state = d_s0.f();
  f.final_state = fs.f();
  auto copy_pair = [&](const float* pair, const DeviceBuffer& out) {
    if (cudaMemcpy(out.get(), pair, de * sizeof(float), cudaMemcpyDeviceToDevice) != cudaSuccess)
      throw std::runtime_error("cudaMemcpy D2D failed");
  };
  if (run == Run::kTwoPhase) {
    kernels::ForwardPass pass(f);
    copy_pair(pass.local_state(), sf);
    pass.finish(d_s0.f(), fs.f());
  } else {
    kernels::forward(f);
  }

  kernels::BackwardParams b;
  fill(&b);
  b.q = dq_in.get();
  b.k = dk_in.get();
  b.v = dv_in.get();
  b.d_o = ddo_in.get();
  b.dq = dq.get();
  b.dk = dk.get();
  b.dv = dv.get();
  b.q_stride = b.k_stride = b.dq_stride = b.dk_stride = q.strides;
  b.v_stride = b.do_stride = b.dv_stride = v.strides;
  b.initial_state = d_s0.f();
  b.d_final_state = d_g.f();
  b.d_initial_state = ds0.f();
  if (run == Run::kTwoPhase) {
    kernels::BackwardPass pass(b);
    copy_pair(pass.local_state(), sb);
    pass.finish(d_g.f(), ds0.f());
    if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("CUDA kernels failed");
    return download_results(pr, bnhd, o, dq, dk, dv, fs, ds0, sf, sb);
  }
  kernels::backward(b);

  kernels::StateParams st;
  fill(&st);
  st.kind = kernels::StateKind::kForward;
  st.x = dk_in.get();
  st.y = dv_in.get();
  st.x_stride = k.strides;
  st.y_stride = v.strides;
  st.state = sf.f();
  kernels::local_state(st);
  st.kind = kernels::StateKind::kBackward;
  st.x = dq_in.get();
  st.y = ddo_in.get();
  st.x_stride = q.strides;
  st.y_stride = dout.strides;
  st.state = sb.f();
  kernels::local_state(st);
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("CUDA kernels failed");
  return download_results(pr, bnhd, o, dq, dk, dv, fs, ds0, sf, sb);
}

// Relative-error tolerance of the CUDA backend: bf16/fp16 operands of every
// product (P and the state rounded to the element type, as in FLA), fp32
// accumulation; fp32 inputs run on tf32 tensor cores.
inline double cuda_tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 2e-3;
    case DType::kBFloat16:
      return 1.5e-2;
    case DType::kFloat16:
      return 3e-3;
  }
  return 0;
}

}  // namespace lightring::test
