// kernels/state_ops.h on the host: the combine y <- λ_h^len·x + y against a
// float64 reference, and the buffer operations around it.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/state_ops.h"

namespace lightring::test {
namespace {

using kernels::Device;

std::vector<float> random_values(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = u(gen);
  return x;
}

// B = 3, H = 5, D·E = 7·3 (odd sizes), len = 37; with decay and without (λ = 1).
TEST(StateOps, AxpyDecayMatchesFloat64) {
  const int64_t B = 3, H = 5, per_head = 21, len = 37;
  const size_t n = B * H * per_head;
  const std::vector<float> x = random_values(n, 1), y0 = random_values(n, 2);
  const std::vector<float> decay = {0.0f, 0.01f, 0.1f, 0.5f, 3.0f};
  for (const float* d : {decay.data(), static_cast<const float*>(nullptr)}) {
    std::vector<float> y = y0;
    kernels::axpy_decay(Device::kCpu, y.data(), x.data(), d, B, H, per_head, len, nullptr);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const double a = d ? std::exp(-static_cast<double>(d[h]) * len) : 1.0;
        for (int64_t i = 0; i < per_head; ++i) {
          const size_t at = (b * H + h) * per_head + i;
          const double want = a * x[at] + y0[at];
          ASSERT_NEAR(y[at], want, 1e-6 * (1.0 + std::fabs(want))) << "b=" << b << " h=" << h;
        }
      }
  }
}

TEST(StateOps, BuffersZeroCopyAndMove) {
  kernels::StateBuffer a(Device::kCpu, 11);
  ASSERT_EQ(a.count(), 11u);
  for (size_t i = 0; i < a.count(); ++i) EXPECT_EQ(a.data()[i], 0.0f);
  const std::vector<float> x = random_values(11, 3);
  kernels::copy_state(Device::kCpu, a.data(), x.data(), x.size(), nullptr);
  kernels::StateBuffer b = std::move(a);
  EXPECT_EQ(a.data(), nullptr);
  ASSERT_EQ(b.count(), 11u);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(b.data()[i], x[i]);
  kernels::fill_zero(Device::kCpu, b.data(), b.count(), nullptr);
  for (size_t i = 0; i < b.count(); ++i) EXPECT_EQ(b.data()[i], 0.0f);
  kernels::record_event(Device::kCpu, nullptr, nullptr);  // a no-op on the host
}

}  // namespace
}  // namespace lightring::test
