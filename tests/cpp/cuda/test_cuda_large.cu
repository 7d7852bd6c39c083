// Large N on the GPU: N = 2^20 tokens, B = 1, H = 8, D = E = 128, bf16,
// forward + backward (64-bit offsets: one tensor has 2^30 elements). The CPU
// backend checks sampled heads on sampled windows of 512 rows: the state
// entering each window and the state gradient leaving it come from CPU
// local_state pairs of 64K-row segments combined as in docs/algorithm.md §3,
// then the CPU forward / backward of the window runs from them. Final state
// and dS0 of the sampled heads are checked too.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "cuda/cuda_runner.h"
#include "testing/counter_hash.h"

namespace lightring::test {
namespace {

// x[i] = sd·u(i), u uniform on [-√3, √3) (variance 1): the counter hash of testing/counter_hash.h.
__global__ void fill_uniform_kernel(__nv_bfloat16* x, int64_t n, uint64_t seed, float sd) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = __float2bfloat16_rn(uniform_value(seed, static_cast<uint64_t>(i)) * sd);
}

void fill_uniform(const DeviceBuffer& b, int64_t n, uint64_t seed, float sd) {
  fill_uniform_kernel<<<1024, 256>>>(static_cast<__nv_bfloat16*>(b.get()), n, seed, sd);
  ASSERT_CUDA(cudaGetLastError());
}

constexpr int64_t kN = int64_t{1} << 20, kH = 8, kD = 128, kSeg = 65536, kWin = 512;

kernels::Problem cpu_problem(const float* decay, int64_t n) {
  kernels::Problem p;
  p.device = kernels::Device::kCpu;
  p.dtype = DType::kBFloat16;
  p.batch = 1;
  p.heads = 1;
  p.seqlen = n;
  p.qk_dim = kD;
  p.v_dim = kD;
  p.decay = decay;
  return p;
}

// One head's rows on the host, as bf16.
struct Head {
  HostTensor q, k, v, dout;
  const void* row(const HostTensor& t, int64_t r) const {
    return static_cast<const char*>(t.data()) + r * kD * 2;
  }
};

// CPU local pair of rows [a, a + n) of one head.
std::vector<float> cpu_pair(const Head& hd, const float* decay, int64_t a, int64_t n, bool fwd) {
  kernels::StateParams p;
  static_cast<kernels::Problem&>(p) = cpu_problem(decay, n);
  p.kind = fwd ? kernels::StateKind::kForward : kernels::StateKind::kBackward;
  p.x = hd.row(fwd ? hd.k : hd.q, a);
  p.y = hd.row(fwd ? hd.v : hd.dout, a);
  p.x_stride = p.y_stride = kernels::contiguous_bhnd(1, n, kD);
  std::vector<float> out(kD * kD);
  p.state = out.data();
  kernels::local_state(p);
  return out;
}

// x <- λ^n·x + y.
void combine_into(std::vector<double>* x, const std::vector<float>& y, double s, int64_t n) {
  const double a = std::exp(-s * static_cast<double>(n));
  for (size_t i = 0; i < x->size(); ++i) (*x)[i] = a * (*x)[i] + y[i];
}

TEST(CudaLarge, MillionTokensMatchCpuOnSampledWindows) {
  if (!kernels::cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const int64_t n = kN * kH * kD;  // 2^30 elements per tensor
  const size_t bytes = n * 2, state_bytes = kH * kD * kD * 4;
  DeviceBuffer q(bytes), k(bytes), v(bytes), dout(bytes), o(bytes), dq(bytes), dk(bytes), dv(bytes);
  const float sd = 1.0f / std::sqrt(std::sqrt(static_cast<float>(kD)));
  fill_uniform(q, n, 1, sd);
  fill_uniform(k, n, 2, sd);
  fill_uniform(v, n, 3, 1.0f);
  fill_uniform(dout, n, 4, 1.0f);
  for (auto* b : {&o, &dq, &dk, &dv}) ASSERT_CUDA(cudaMemset(b->get(), 0xff, bytes));  // NaN
  // Head 0: no decay (the state grows over all 2^20 rows); head 5: λ^N = e^-10.
  std::vector<float> decay(kH);
  kernels::slopes(kH, decay.data());
  decay[0] = 0.0f;
  decay[5] = 10.0f / kN;
  DeviceBuffer d_decay(decay.data(), kH * 4), fs(state_bytes), ds0(state_bytes);
  ASSERT_CUDA(cudaMemset(fs.get(), 0xff, state_bytes));
  ASSERT_CUDA(cudaMemset(ds0.get(), 0xff, state_bytes));

  kernels::ForwardParams f;
  f.device = kernels::Device::kCuda;
  f.dtype = DType::kBFloat16;
  f.batch = 1;
  f.heads = kH;
  f.seqlen = kN;
  f.qk_dim = f.v_dim = kD;
  f.decay = d_decay.f();
  kernels::BackwardParams b;
  static_cast<kernels::Problem&>(b) = f;
  f.q = q.get();
  f.k = k.get();
  f.v = v.get();
  f.o = o.get();
  f.q_stride = f.k_stride = f.v_stride = f.o_stride = kernels::contiguous_bhnd(kH, kN, kD);
  f.final_state = fs.f();
  b.q = q.get();
  b.k = k.get();
  b.v = v.get();
  b.d_o = dout.get();
  b.dq = dq.get();
  b.dk = dk.get();
  b.dv = dv.get();
  b.q_stride = b.k_stride = b.v_stride = b.do_stride = f.q_stride;
  b.dq_stride = b.dk_stride = b.dv_stride = f.q_stride;
  b.d_initial_state = ds0.f();
  const auto t0 = std::chrono::steady_clock::now();
  kernels::forward(f);
  kernels::backward(b);
  ASSERT_CUDA(cudaDeviceSynchronize());
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ info ] N=2^20 H=8 D=128 bf16 forward+backward (first call): %.1f ms\n", ms);

  std::vector<float> h_fs(kH * kD * kD), h_ds0(kH * kD * kD);
  fs.download(h_fs.data());
  ds0.download(h_ds0.data());
  const int64_t num_segs = kN / kSeg;
  for (int64_t h : {0, 5}) {
    SCOPED_TRACE("head " + std::to_string(h));
    Head hd{HostTensor(DType::kBFloat16, kN * kD), HostTensor(DType::kBFloat16, kN * kD),
            HostTensor(DType::kBFloat16, kN * kD), HostTensor(DType::kBFloat16, kN * kD)};
    const size_t off = h * kN * kD * 2;
    auto copy = [&](HostTensor& t, const DeviceBuffer& src) {
      ASSERT_CUDA(cudaMemcpy(t.data(), static_cast<const char*>(src.get()) + off, kN * kD * 2,
                             cudaMemcpyDeviceToHost));
    };
    copy(hd.q, q);
    copy(hd.k, k);
    copy(hd.v, v);
    copy(hd.dout, dout);
    const float* dh = &decay[h];
    const double s = decay[h];

    // Local pairs of every segment, and of the rest of each sampled segment after its window.
    std::vector<std::vector<float>> A(num_segs), C(num_segs), C_rest(num_segs);
    std::vector<std::thread> pool;
    for (int64_t g = 0; g < num_segs; ++g) {
      pool.emplace_back([&, g] {
        A[g] = cpu_pair(hd, dh, g * kSeg, kSeg, true);
        C[g] = cpu_pair(hd, dh, g * kSeg, kSeg, false);
        C_rest[g] = cpu_pair(hd, dh, g * kSeg + kWin, kSeg - kWin, false);
      });
    }
    for (auto& t : pool) t.join();
    std::vector<std::vector<double>> S_in(num_segs + 1), dS_out(num_segs);
    S_in[0].assign(kD * kD, 0.0);
    for (int64_t g = 0; g < num_segs; ++g) {
      S_in[g + 1] = S_in[g];
      combine_into(&S_in[g + 1], A[g], s, kSeg);
    }
    std::vector<double> ds(kD * kD, 0.0);
    for (int64_t g = num_segs - 1; g >= 0; --g) {
      dS_out[g] = ds;
      combine_into(&ds, C[g], s, kSeg);
    }
    EXPECT_LT(rel_err(to_double(std::vector<float>(h_fs.begin() + h * kD * kD,
                                                   h_fs.begin() + (h + 1) * kD * kD)),
                      S_in[num_segs]),
              1e-2)
        << "final_state";
    EXPECT_LT(rel_err(to_double(std::vector<float>(h_ds0.begin() + h * kD * kD,
                                                   h_ds0.begin() + (h + 1) * kD * kD)),
                      ds),
              1e-2)
        << "dS0";

    for (int64_t g : {int64_t{0}, num_segs / 2 - 1, num_segs - 1}) {
      SCOPED_TRACE("window at row " + std::to_string(g * kSeg));
      const int64_t a = g * kSeg;
      const std::vector<float> s_in(S_in[g].begin(), S_in[g].end());
      std::vector<double> after = dS_out[g];  // dS leaving the window: rest of segment, then dS_out
      combine_into(&after, C_rest[g], s, kSeg - kWin);
      const std::vector<float> ds_after(after.begin(), after.end());

      HostTensor o_ref(DType::kBFloat16, kWin * kD), dq_ref(DType::kBFloat16, kWin * kD),
          dk_ref(DType::kBFloat16, kWin * kD), dv_ref(DType::kBFloat16, kWin * kD);
      kernels::ForwardParams cf;
      static_cast<kernels::Problem&>(cf) = cpu_problem(dh, kWin);
      cf.q = hd.row(hd.q, a);
      cf.k = hd.row(hd.k, a);
      cf.v = hd.row(hd.v, a);
      cf.o = o_ref.data();
      cf.q_stride = cf.k_stride = cf.v_stride = cf.o_stride = kernels::contiguous_bhnd(1, kWin, kD);
      cf.initial_state = s_in.data();
      kernels::forward(cf);
      kernels::BackwardParams cb;
      static_cast<kernels::Problem&>(cb) = cpu_problem(dh, kWin);
      cb.q = cf.q;
      cb.k = cf.k;
      cb.v = cf.v;
      cb.d_o = hd.row(hd.dout, a);
      cb.dq = dq_ref.data();
      cb.dk = dk_ref.data();
      cb.dv = dv_ref.data();
      cb.q_stride = cb.k_stride = cb.v_stride = cb.do_stride = cf.q_stride;
      cb.dq_stride = cb.dk_stride = cb.dv_stride = cf.q_stride;
      cb.initial_state = s_in.data();
      cb.d_final_state = ds_after.data();
      kernels::backward(cb);

      auto gpu_rows = [&](const DeviceBuffer& t) {
        HostTensor out(DType::kBFloat16, kWin * kD);
        const size_t row_off = off + static_cast<size_t>(a) * kD * 2;
        if (cudaMemcpy(out.data(), static_cast<const char*>(t.get()) + row_off, kWin * kD * 2,
                       cudaMemcpyDeviceToHost) != cudaSuccess)
          throw std::runtime_error("cudaMemcpy D2H failed");
        return out.to_double();
      };
      constexpr double kTol = 1.5e-2;  // bf16 outputs of two fp32-accumulating backends
      EXPECT_LT(rel_err(gpu_rows(o), o_ref.to_double()), kTol) << "o";
      EXPECT_LT(rel_err(gpu_rows(dq), dq_ref.to_double()), kTol) << "dq";
      EXPECT_LT(rel_err(gpu_rows(dk), dk_ref.to_double()), kTol) << "dk";
      EXPECT_LT(rel_err(gpu_rows(dv), dv_ref.to_double()), kTol) << "dv";
    }
  }
}

}  // namespace
}  // namespace lightring::test
