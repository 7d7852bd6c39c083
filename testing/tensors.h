// Host tensors for tests: random data in any lightring dtype, round-tripped
// to float64 so that the oracle sees exactly the values the kernel sees.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/element.h"

namespace lightring::test {

class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, size_t numel)
      : dtype_(dtype), numel_(numel), bytes_(numel * dtype_size(dtype)) {}

  static HostTensor from_double(const std::vector<double>& x, DType dtype) {
    HostTensor t(dtype, x.size());
    for (size_t i = 0; i < x.size(); ++i) t.set(i, x[i]);
    return t;
  }

  void* data() { return bytes_.data(); }
  const void* data() const { return bytes_.data(); }
  size_t numel() const { return numel_; }
  size_t nbytes() const { return bytes_.size(); }
  DType dtype() const { return dtype_; }

  double get(size_t i) const {
    using namespace kernels::cpu;
    switch (dtype_) {
      case DType::kFloat32:
        return reinterpret_cast<const float*>(bytes_.data())[i];
      case DType::kBFloat16:
        return to_float(reinterpret_cast<const bf16*>(bytes_.data())[i]);
      case DType::kFloat16:
        return to_float(reinterpret_cast<const fp16*>(bytes_.data())[i]);
    }
    return 0;
  }
  void set(size_t i, double x) {
    using namespace kernels::cpu;
    const float f = static_cast<float>(x);
    switch (dtype_) {
      case DType::kFloat32:
        reinterpret_cast<float*>(bytes_.data())[i] = f;
        break;
      case DType::kBFloat16:
        reinterpret_cast<bf16*>(bytes_.data())[i] = from_float<bf16>(f);
        break;
      case DType::kFloat16:
        reinterpret_cast<fp16*>(bytes_.data())[i] = from_float<fp16>(f);
        break;
    }
  }
  std::vector<double> to_double() const {
    std::vector<double> out(numel_);
    for (size_t i = 0; i < numel_; ++i) out[i] = get(i);
    return out;
  }
  // Fill with NaN so that an unwritten element fails every comparison.
  void poison() {
    for (size_t i = 0; i < numel_; ++i) set(i, std::numeric_limits<double>::quiet_NaN());
  }

 private:
  DType dtype_ = DType::kFloat32;
  size_t numel_ = 0;
  std::vector<uint8_t> bytes_;
};

inline std::vector<double> randn(size_t n, std::mt19937_64& rng, double stddev = 1.0) {
  std::normal_distribution<double> dist(0.0, stddev);
  std::vector<double> x(n);
  for (auto& v : x) v = dist(rng);
  return x;
}

// Random data rounded to dtype: returns the tensor and its exact float64 values.
inline HostTensor random_tensor(size_t n, DType dtype, std::mt19937_64& rng, double stddev,
                                std::vector<double>* exact) {
  HostTensor t = HostTensor::from_double(randn(n, rng, stddev), dtype);
  if (exact) *exact = t.to_double();
  return t;
}

inline std::vector<float> to_float(const std::vector<double>& x) {
  return std::vector<float>(x.begin(), x.end());
}
inline std::vector<double> to_double(const std::vector<float>& x) {
  return std::vector<double>(x.begin(), x.end());
}

}  // namespace lightring::test
