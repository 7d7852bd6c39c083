// Deterministic inputs of lightring-bench, identical on the host and on a GPU:
// element i of tensor `seed` is test::uniform_value(seed, i) (testing/counter_hash.h),
// rounded to the dtype (round-to-nearest-even on both), so the host (--check
// reference, CPU backend) and the device fill (CUDA backend, no host copy of
// multi-GB shards) produce the same bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "testing/counter_hash.h"

namespace lightring::launch {

// Host: `numel` values of tensor `seed`, rounded to dtype, as raw dtype bytes.
std::vector<uint8_t> bench_bytes(size_t numel, DType dtype, uint64_t seed);

// Device (bench_fill_cuda.cu, CUDA builds): the same values written at `dst`
// (numel elements of dtype) on `stream`.
void fill_device(void* dst, size_t numel, DType dtype, uint64_t seed, void* stream);

}  // namespace lightring::launch
