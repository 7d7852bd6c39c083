// kernels/state_ops.h on a GPU: device buffers and the device combine against
// the host combine (the same float scalar λ_h^len; y = a·x + y may round once
// differently where the device contracts it to an FMA).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/state_ops.h"

namespace lightring::test {
namespace {

using kernels::Device;

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::vector<float> random_values(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = u(gen);
  return x;
}

std::vector<float> download(const float* d, size_t n) {
  std::vector<float> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// Heads beyond 256 and a per-head size beyond one block of threads.
TEST(CudaStateOps, AxpyDecayMatchesHost) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const auto& shape :
       {std::vector<int64_t>{2, 3, 21, 37}, std::vector<int64_t>{1, 300, 64, 4096},
        std::vector<int64_t>{4, 8, 128 * 128, 1000001}}) {
    const int64_t B = shape[0], H = shape[1], per_head = shape[2], len = shape[3];
    SCOPED_TRACE("B=" + std::to_string(B) + " H=" + std::to_string(H));
    const size_t n = B * H * per_head;
    const std::vector<float> x = random_values(n, 1), y0 = random_values(n, 2);
    std::vector<float> decay(H);
    kernels::slopes(H, decay.data());
    cudaStream_t stream = nullptr;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    {  // the buffers are freed on `stream`, so they go before it
      kernels::StateBuffer dx(Device::kCuda, n, stream), dy(Device::kCuda, n, stream),
          dd(Device::kCuda, H, stream);
      ASSERT_EQ(cudaMemcpyAsync(dx.data(), x.data(), n * 4, cudaMemcpyHostToDevice, stream),
                cudaSuccess);
      ASSERT_EQ(cudaMemcpyAsync(dd.data(), decay.data(), H * 4, cudaMemcpyHostToDevice, stream),
                cudaSuccess);
      for (const bool with_decay : {true, false}) {
        ASSERT_EQ(cudaMemcpyAsync(dy.data(), y0.data(), n * 4, cudaMemcpyHostToDevice, stream),
                  cudaSuccess);
        const float* d_dev = with_decay ? dd.data() : nullptr;
        const float* d_host = with_decay ? decay.data() : nullptr;
        kernels::axpy_decay(Device::kCuda, dy.data(), dx.data(), d_dev, B, H, per_head, len,
                            stream);
        std::vector<float> want = y0;
        kernels::axpy_decay(Device::kCpu, want.data(), x.data(), d_host, B, H, per_head, len,
                            nullptr);
        ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
        const std::vector<float> got = download(dy.data(), n);
        double worst = 0.0;
        for (size_t i = 0; i < n; ++i)
          worst = std::fmax(worst, std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i])));
        EXPECT_LE(worst, 2e-7) << (with_decay ? "decay" : "no decay");
      }
    }
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  }
}

TEST(CudaStateOps, BuffersZeroCopyAndEvents) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const size_t n = 1000;
  const std::vector<float> x = random_values(n, 5);
  kernels::StateBuffer a(Device::kCuda, n), b(Device::kCuda, n);
  ASSERT_EQ(cudaMemcpy(a.data(), x.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
  kernels::copy_state(Device::kCuda, b.data(), a.data(), n, nullptr);
  cudaEvent_t ev = nullptr;
  ASSERT_EQ(cudaEventCreate(&ev), cudaSuccess);
  kernels::record_event(Device::kCuda, ev, nullptr);
  ASSERT_EQ(cudaEventSynchronize(ev), cudaSuccess);
  EXPECT_EQ(download(b.data(), n), x);
  kernels::fill_zero(Device::kCuda, b.data(), n, nullptr);
  EXPECT_EQ(download(b.data(), n), std::vector<float>(n, 0.0f));
  kernels::StateBuffer c = std::move(b);
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(download(c.data(), n), std::vector<float>(n, 0.0f));
  ASSERT_EQ(cudaEventDestroy(ev), cudaSuccess);
}

}  // namespace
}  // namespace lightring::test
