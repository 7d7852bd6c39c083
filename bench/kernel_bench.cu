// lightring kernel benchmark: times the CUDA backend's forward, backward and
// forward+backward on one GPU, measures the device copy bandwidth in the same
// run, and writes rows in the format of docs/bench-json.md (one JSON object
// per line, merged with the peers' rows by bench/merge_results.py).
//
//   kernel_bench [-w WARMUP] [-n ITERS] [--dtype bf16] [--no-decay] [--check] [--out rows.jsonl]
//                [--layout bhnd|bnhd] [--family auto|mma] [--no-fused] [--no-decay-window] [--waves
//                W] [--seg-len L] SHAPE...        SHAPE = B,H,N,D[,E]   e.g. 1,32,16384,128
//
// --family and the switches after it set kernels::KernelTuning (A/B runs of one binary); each
// row names the kernel family that ran it ("family": tf32, mma or wgmma).
//
// Metrics (defined once here): ms = median over ITERS of CUDA-event times;
// tokens_per_s = B·N / s; achieved_TBps = the minimum bytes of
// docs/algorithm.md §4 (fwd: read q,k,v + write o; bwd: read q,k,v,dO + write
// dq,dk,dv; fwdbwd: their sum) over the time; peak_GB = the 8 tensors of a
// training step (q,k,v,o,dO,dq,dk,dv) plus the high-water mark of the
// stream-ordered pool that holds lightring's workspaces. Inputs are uniform
// random (never zeros), decay = slopes(H).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cuda/family.h"
#include "testing/counter_hash.h"
#include "testing/oracle.h"

namespace {

using lightring::kernels::DType;

#define CHECK(call)                                                                              \
  do {                                                                                           \
    cudaError_t e_ = (call);                                                                     \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

__global__ void fill_kernel(void* x, int64_t n, uint64_t seed, float amp, int kind) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // Uniform on [-amp, amp): lightring-bench's counter hash (variance 1) rescaled.
    const float u =
        lightring::test::uniform_value(seed, static_cast<uint64_t>(i)) * (amp / 1.7320508f);
    if (kind == 0) static_cast<float*>(x)[i] = u;
    if (kind == 1) static_cast<__nv_bfloat16*>(x)[i] = __float2bfloat16_rn(u);
    if (kind == 2) static_cast<__half*>(x)[i] = __float2half_rn(u);
  }
}

struct Shape {
  int64_t B, H, N, D, E;
};

double median_ms(const std::function<void()>& fn, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> ts;
  for (int i = 0; i < iters; ++i) {
    CHECK(cudaEventRecord(a));
    fn();
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    ts.push_back(ms);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

// Device-to-device copy bandwidth, bytes read + written, TB/s.
double copy_tbps() {
  const size_t bytes = size_t{2} << 30;
  void *a, *b;
  CHECK(cudaMalloc(&a, bytes));
  CHECK(cudaMalloc(&b, bytes));
  CHECK(cudaMemset(a, 1, bytes));
  const double ms =
      median_ms([&] { CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 3, 10);
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  return 2.0 * bytes / (ms * 1e-3) / 1e12;
}

std::vector<double> download(const void* p, int64_t n, DType t) {
  std::vector<double> out(n);
  if (t == DType::kFloat32) {
    std::vector<float> h(n);
    CHECK(cudaMemcpy(h.data(), p, n * 4, cudaMemcpyDeviceToHost));
    std::copy(h.begin(), h.end(), out.begin());
  } else if (t == DType::kBFloat16) {
    std::vector<__nv_bfloat16> h(n);
    CHECK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < n; ++i) out[i] = __bfloat162float(h[i]);
  } else {
    std::vector<__half> h(n);
    CHECK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < n; ++i) out[i] = __half2float(h[i]);
  }
  return out;
}

// ‖out − ref‖/‖ref‖ against the float64 oracle (testing/oracle.h) of the outputs
// the last forward and backward left in f.o, b.dq, b.dk, b.dv: {forward, worst of all}.
std::pair<double, double> rel_err_vs_oracle(const Shape& s, DType t, bool decay_on,
                                            const lightring::kernels::ForwardParams& f,
                                            const lightring::kernels::BackwardParams& b) {
  CHECK(cudaDeviceSynchronize());
  const int64_t nd = s.B * s.H * s.N * s.D, ne = s.B * s.H * s.N * s.E;
  const auto q = download(f.q, nd, t), k = download(f.k, nd, t), v = download(f.v, ne, t);
  const auto dout = download(b.d_o, ne, t), o = download(f.o, ne, t);
  const auto dq = download(b.dq, nd, t), dk = download(b.dk, nd, t), dv = download(b.dv, ne, t);
  std::vector<double> decay;
  if (decay_on) {
    std::vector<float> sl(s.H);
    lightring::kernels::slopes(s.H, sl.data());
    decay.assign(sl.begin(), sl.end());
  }
  const lightring::test::Shape os{s.B, s.H, s.N, s.D, s.E};
  const auto ref = lightring::test::oracle_forward(os, q, k, v, decay, f.scale, {});
  const auto g = lightring::test::oracle_backward(os, q, k, v, decay, f.scale, {}, dout, {});
  using lightring::test::rel_err;
  const double ef = rel_err(o, ref.o);
  return {ef, std::max({ef, rel_err(dq, g.dq), rel_err(dk, g.dk), rel_err(dv, g.dv)})};
}

}  // namespace

int main(int argc, char** argv) {
  int warmup = 3, iters = 10;
  DType dtype = DType::kBFloat16;
  bool decay_on = true, check_small = false;
  std::string out_path;
  std::vector<Shape> shapes;
  lightring::kernels::KernelTuning tuning;
  bool bnhd = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--layout" && i + 1 < argc) {
      const std::string l = argv[++i];
      if (l != "bhnd" && l != "bnhd") {
        std::fprintf(stderr, "--layout must be bhnd or bnhd (got '%s')\n", l.c_str());
        return 2;
      }
      bnhd = l == "bnhd";
    } else if (a == "--family" && i + 1 < argc) {
      const std::string f = argv[++i];
      if (f != "auto" && f != "mma") {
        std::fprintf(stderr, "--family must be auto or mma (got '%s')\n", f.c_str());
        return 2;
      }
      tuning.family = f == "mma" ? lightring::kernels::KernelTuning::Family::kMma
                                 : lightring::kernels::KernelTuning::Family::kAuto;
    } else if (a == "--no-fused") {
      tuning.fused = false;
    } else if (a == "--no-decay-window") {
      tuning.decay_window = false;
    } else if (a == "--waves" && i + 1 < argc) {
      tuning.segment_waves = std::atoi(argv[++i]);
    } else if (a == "--seg-len" && i + 1 < argc) {
      tuning.segment_len = std::atoll(argv[++i]);
    } else if (a == "-w" && i + 1 < argc)
      warmup = std::atoi(argv[++i]);
    else if (a == "-n" && i + 1 < argc)
      iters = std::atoi(argv[++i]);
    else if (a == "--dtype" && i + 1 < argc)
      dtype = lightring::kernels::parse_dtype(argv[++i]);
    else if (a == "--no-decay")
      decay_on = false;
    else if (a == "--check")
      check_small = true;
    else if (a == "--out" && i + 1 < argc)
      out_path = argv[++i];
    else {
      Shape s{0, 0, 0, 0, 0};
      const int got = std::sscanf(a.c_str(), "%ld,%ld,%ld,%ld,%ld", &s.B, &s.H, &s.N, &s.D, &s.E);
      if (got < 4) {
        std::fprintf(
            stderr,
            "usage: %s [-w W] [-n N] [--dtype T] [--no-decay] [--check] [--out F] [--family F] "
            "[--no-fused] [--no-decay-window] [--waves W] [--seg-len L] [--layout L] "
            "B,H,N,D[,E]...\n",
            argv[0]);
        return 2;
      }
      if (got == 4) s.E = s.D;
      shapes.push_back(s);
    }
  }
  FILE* out = out_path.empty() ? nullptr : std::fopen(out_path.c_str(), "w");
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy = copy_tbps();
  if (bnhd && check_small) {
    std::fprintf(stderr, "--check compares bhnd buffers with the oracle: use --layout bhnd\n");
    return 2;
  }
  lightring::kernels::set_kernel_tuning(tuning);
  std::printf(
      "# device %s, copy %.3f TB/s (read+write), family %s, fused %d, decay window %d, waves %d, "
      "seg_len %ld\n",
      prop.name, copy, lightring::kernels::family_name(tuning.family), tuning.fused,
      tuning.decay_window, tuning.segment_waves, static_cast<long>(tuning.segment_len));
  if (out)
    std::fprintf(out, "{\"ceiling\": \"copy_TBps\", \"value\": %.4f, \"device\": \"%s\"}\n", copy,
                 prop.name);
  std::printf("# %-3s %-4s %-8s %-4s %-4s %-7s %10s %12s %8s %8s\n", "B", "H", "N", "D", "E",
              "pass", "ms", "tokens/s", "TB/s", "peak_GB");

  cudaMemPool_t pool;
  CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
  const size_t es = lightring::kernels::dtype_size(dtype);
  const int kind = dtype == DType::kFloat32 ? 0 : dtype == DType::kBFloat16 ? 1 : 2;
  for (const Shape& s : shapes) {
    const int64_t nd = s.B * s.H * s.N * s.D, ne = s.B * s.H * s.N * s.E;
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float* decay = nullptr;
    CHECK(cudaMalloc(&q, nd * es));
    CHECK(cudaMalloc(&k, nd * es));
    CHECK(cudaMalloc(&dq, nd * es));
    CHECK(cudaMalloc(&dk, nd * es));
    CHECK(cudaMalloc(&v, ne * es));
    CHECK(cudaMalloc(&o, ne * es));
    CHECK(cudaMalloc(&dout, ne * es));
    CHECK(cudaMalloc(&dv, ne * es));
    const float qk_amp = std::sqrt(3.0f) / std::sqrt(std::sqrt(static_cast<float>(s.D)));
    fill_kernel<<<1024, 256>>>(q, nd, 11, qk_amp, kind);
    fill_kernel<<<1024, 256>>>(k, nd, 12, qk_amp, kind);
    fill_kernel<<<1024, 256>>>(v, ne, 13, std::sqrt(3.0f), kind);
    fill_kernel<<<1024, 256>>>(dout, ne, 14, std::sqrt(3.0f), kind);
    CHECK(cudaGetLastError());
    if (decay_on) {
      std::vector<float> sl(s.H);
      lightring::kernels::slopes(s.H, sl.data());
      CHECK(cudaMalloc(&decay, s.H * sizeof(float)));
      CHECK(cudaMemcpy(decay, sl.data(), s.H * sizeof(float), cudaMemcpyHostToDevice));
    }
    lightring::kernels::ForwardParams f;
    f.device = lightring::kernels::Device::kCuda;
    f.dtype = dtype;
    f.batch = s.B;
    f.heads = s.H;
    f.seqlen = s.N;
    f.qk_dim = s.D;
    f.v_dim = s.E;
    f.decay = decay;
    lightring::kernels::BackwardParams b;
    static_cast<lightring::kernels::Problem&>(b) = f;
    f.q = q;
    f.k = k;
    f.v = v;
    f.o = o;
    const auto strides =
        bnhd ? lightring::kernels::contiguous_bnhd : lightring::kernels::contiguous_bhnd;
    f.q_stride = f.k_stride = strides(s.H, s.N, s.D);
    f.v_stride = f.o_stride = strides(s.H, s.N, s.E);
    b.q = q;
    b.k = k;
    b.v = v;
    b.d_o = dout;
    b.dq = dq;
    b.dk = dk;
    b.dv = dv;
    b.q_stride = b.k_stride = b.dq_stride = b.dk_stride = f.q_stride;
    b.v_stride = b.do_stride = b.dv_stride = f.v_stride;

    CHECK(cudaDeviceSynchronize());
    uint64_t zero = 0;
    CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
    const double t_f = median_ms([&] { lightring::kernels::forward(f); }, warmup, iters);
    const double t_b = median_ms([&] { lightring::kernels::backward(b); }, warmup, iters);
    const double t_fb = median_ms(
        [&] {
          lightring::kernels::forward(f);
          lightring::kernels::backward(b);
        },
        warmup, iters);
    uint64_t pool_high = 0;
    CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &pool_high));
    const double peak_gb = (4.0 * nd * es + 4.0 * ne * es + pool_high) / 1e9;
    const double fwd_bytes = (2.0 * nd + 2.0 * ne) * es, bwd_bytes = (4.0 * nd + 3.0 * ne) * es;
    // Checked against float64 on small shapes only (the oracle is O(N²) on the host).
    const bool check = check_small && s.N <= 4096 && s.B * s.H <= 4;
    double err_fwd = -1.0, err = -1.0;
    if (check) std::tie(err_fwd, err) = rel_err_vs_oracle(s, dtype, decay_on, f, b);
    struct Row {
      const char* pass;
      double ms, bytes, peak;
    } rows[] = {{"fwd", t_f, fwd_bytes, fwd_bytes + pool_high},
                {"bwd", t_b, bwd_bytes, bwd_bytes + pool_high},
                {"fwdbwd", t_fb, fwd_bytes + bwd_bytes, (4.0 * nd + 4.0 * ne) * es + pool_high}};
    for (const Row& r : rows) {
      const double tps = s.B * s.N / (r.ms * 1e-3), tbps = r.bytes / (r.ms * 1e-3) / 1e12;
      const double e = r.pass[0] == 'f' && r.pass[3] != 'b' ? err_fwd : err;
      std::printf("  %-3ld %-4ld %-8ld %-4ld %-4ld %-7s %10.3f %12.4g %8.3f %8.2f %10.3g\n", s.B,
                  s.H, s.N, s.D, s.E, r.pass, r.ms, tps, tbps, r.peak / 1e9, e);
      char err_s[32] = "null";
      if (e >= 0) std::snprintf(err_s, sizeof(err_s), "%.4g", e);
      if (out)
        std::fprintf(
            out,
            "{\"impl\": \"lightring\", \"B\": %ld, \"H\": %ld, \"N\": %ld, \"n_local\": %ld, "
            "\"D\": %ld, \"E\": %ld, \"dtype\": \"%s\", \"decay\": %s, \"pass\": \"%s\", "
            "\"ms\": %.5f, \"tokens_per_s\": %.6g, \"achieved_TBps\": %.4f, \"peak_GB\": %.3f, "
            "\"rel_err\": %s, \"family\": \"%s\", \"layout\": \"%s\"}\n",
            s.B, s.H, s.N, s.N, s.D, s.E, lightring::kernels::dtype_name(dtype),
            decay_on ? "true" : "false", r.pass, r.ms, tps, tbps, r.peak / 1e9, err_s,
            lightring::kernels::cuda::family_of(dtype, static_cast<int>(s.D),
                                                static_cast<int>(s.E)),
            bnhd ? "bnhd" : "bhnd");
      std::fflush(stdout);
    }
    for (void* p : {q, k, v, o, dout, dq, dk, dv}) CHECK(cudaFree(p));
    if (decay) CHECK(cudaFree(decay));
  }
  if (out) std::fclose(out);
  return 0;
}
