// Deterministic randomness for shuffles, splits and the synthetic task.
//
// std::mt19937 is portable but std::uniform_int_distribution is not (libstdc++ and libc++
// draw differently), so the data pipeline uses its own: SplitMix64 (Steele, Lea, Flood
// 2014) as the generator and as the seed mixer, and Lemire's unbiased bounded draw. The
// same (seed, stream) gives the same numbers on every platform and every rank.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace lightring::data {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A seed for one independent stream: mix(seed, a, b, ...) differs for every tuple.
inline uint64_t mix_seed(uint64_t seed) {
  return splitmix64(seed);
}
template <typename... Rest>
uint64_t mix_seed(uint64_t seed, uint64_t next, Rest... rest) {
  return mix_seed(splitmix64(seed) ^ next, rest...);
}

// Stream domains, so that e.g. the split and the epoch-0 shuffle of one seed differ.
enum class Stream : uint64_t {
  kSplit = 0x73706c6974ull,      // "split"
  kShuffle = 0x73687566ull,      // "shuf"
  kRecallTrain = 0x7274726eull,  // "rtrn"
  kRecallValid = 0x7276616cull,  // "rval"
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n >= 1, without modulo bias (Lemire 2019).
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

 private:
  uint64_t state_;
};

// Fisher-Yates: a uniform permutation of v, the same for the same rng state.
template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(rng.below(i));
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace lightring::data
