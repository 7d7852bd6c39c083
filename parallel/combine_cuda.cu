// The combine arithmetic of docs/algorithm.md §3 on device states:
//
//     y[b,h,i] = α_h · x[b,h,i] + y[b,h,i]      (X part of (a1,X1) ⊕ (a2,X2) = a2·X1 + X2)
//
// with the per-head scalars α_h = λ_h^len computed on the host and passed by
// value in the launch (kMaxHeads per launch; more heads take several
// launches), so the combine never waits for the host. States are [B,H,D,E]
// fp32 contiguous: per_head = D·E. Everything is enqueued on the caller's stream.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/error.h"
#include "parallel/state_ops.h"

namespace lightring::parallel::cuda_ops {

namespace {

constexpr int kMaxHeads = 256;  // 1 KiB of launch parameters
constexpr int kThreads = 256;

struct HeadScalars {
  float alpha[kMaxHeads];
};

// Grid: x over the D·E values of a head, y over (b, h in this launch's head range).
__global__ void axpy_heads_kernel(float* __restrict__ y, const float* __restrict__ x,
                                  HeadScalars scalars, int64_t heads, int64_t head0,
                                  int64_t heads_here, int64_t per_head) {
  const int64_t bh_local = blockIdx.y;
  const int64_t b = bh_local / heads_here, h = head0 + bh_local % heads_here;
  const float a = scalars.alpha[h - head0];
  const int64_t base = (b * heads + h) * per_head;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < per_head;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[base + i] = a * x[base + i] + y[base + i];
  }
}

// The same combine with α_h = λ_h^len = exp(−s_h·len) computed here from the
// device decay rates (nullptr: λ = 1); double, rounded to float, as
// kernels::segment_decay computes it on the host.
__global__ void axpy_decay_kernel(float* __restrict__ y, const float* __restrict__ x,
                                  const float* __restrict__ decay, int64_t heads, int64_t per_head,
                                  int64_t len) {
  const int64_t bh = blockIdx.y, h = bh % heads;
  const float a =
      decay ? static_cast<float>(exp(-static_cast<double>(decay[h]) * static_cast<double>(len)))
            : 1.0f;
  const int64_t base = bh * per_head;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < per_head;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[base + i] = a * x[base + i] + y[base + i];
  }
}

cudaStream_t as_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}

}  // namespace

float* allocate(size_t count, void* stream) {
  void* p = nullptr;
  LR_CUDA_CHECK(cudaMallocAsync(&p, std::max<size_t>(count, 1) * sizeof(float), as_stream(stream)));
  return static_cast<float*>(p);
}

void release(float* p, void* stream) {
  cudaFreeAsync(p, as_stream(stream));
}

void fill_zero(float* y, size_t count, void* stream) {
  LR_CUDA_CHECK(cudaMemsetAsync(y, 0, count * sizeof(float), as_stream(stream)));
}

void copy(float* dst, const float* src, size_t count, void* stream) {
  LR_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                as_stream(stream)));
}

void to_host(float* dst_host, const float* src, size_t count, void* stream) {
  LR_CUDA_CHECK(
      cudaMemcpyAsync(dst_host, src, count * sizeof(float), cudaMemcpyDefault, as_stream(stream)));
  LR_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void record_event(void* event, void* stream) {
  LR_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), as_stream(stream)));
}

void axpy_heads(float* y, const float* x, const float* alpha, int64_t batch, int64_t heads,
                int64_t per_head, void* stream) {
  if (batch == 0 || heads == 0 || per_head == 0) return;
  const int blocks_x =
      static_cast<int>(std::min<int64_t>((per_head + kThreads - 1) / kThreads, 64));
  for (int64_t h0 = 0; h0 < heads; h0 += kMaxHeads) {
    const int64_t hn = std::min<int64_t>(kMaxHeads, heads - h0);
    HeadScalars s{};
    std::copy(alpha + h0, alpha + h0 + hn, s.alpha);
    const int64_t grid_y = batch * hn;
    LR_CHECK(grid_y <= 65535, "axpy_heads: batch·heads per launch (", grid_y,
             ") exceeds the grid limit 65535");
    axpy_heads_kernel<<<dim3(blocks_x, static_cast<unsigned>(grid_y)), kThreads, 0,
                        as_stream(stream)>>>(y, x, s, heads, h0, hn, per_head);
    LR_CUDA_CHECK(cudaGetLastError());
  }
}

void axpy_decay(float* y, const float* x, const float* decay, int64_t batch, int64_t heads,
                int64_t per_head, int64_t len, void* stream) {
  if (batch == 0 || heads == 0 || per_head == 0) return;
  const int blocks_x =
      static_cast<int>(std::min<int64_t>((per_head + kThreads - 1) / kThreads, 64));
  const int64_t grid_y = batch * heads;
  LR_CHECK(grid_y <= 65535, "axpy_decay: batch·heads (", grid_y, ") exceeds the grid limit 65535");
  axpy_decay_kernel<<<dim3(blocks_x, static_cast<unsigned>(grid_y)), kThreads, 0,
                      as_stream(stream)>>>(y, x, decay, heads, per_head, len);
  LR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace lightring::parallel::cuda_ops
