// Deterministic test and benchmark inputs, identical on the host and on a GPU.
//
// Element i of the tensor with seed `seed` is a counter hash turned into a
// uniform value with mean 0 and variance 1:
//
//     h = mix64(seed ^ mix64(i + φ))                     (splitmix64 finaliser)
//     x = float(⌊h / 2^40⌋ − 2^23) · (√3 / 2^23)         uniform on [−√3, √3)
//
// The conversion is exact and the product is one fp32 rounding, so host code
// (a reference) and device code (a fill kernel, no host copy of multi-GB
// tensors) produce the same bits.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LR_TESTING_HD __host__ __device__
#else
#define LR_TESTING_HD
#endif

namespace lightring::test {

LR_TESTING_HD inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

LR_TESTING_HD inline float uniform_value(uint64_t seed, uint64_t i) {
  const uint64_t h = mix64(seed ^ mix64(i + 0x9e3779b97f4a7c15ull));
  const int32_t k = static_cast<int32_t>(h >> 40) - (1 << 23);  // [-2^23, 2^23)
  return static_cast<float>(k) * (1.7320508075688772f / 8388608.0f);
}

}  // namespace lightring::test
