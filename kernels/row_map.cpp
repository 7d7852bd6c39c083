// kernels/row_map.h: host loops, and the map upload around the CUDA copy kernels.
#include "kernels/row_map.h"

#include <cstring>

#include "core/error.h"
#ifdef LIGHTRING_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace lightring::kernels {

namespace {

// Byte offsets of element (r, h) in both tensors (dim elements follow contiguously).
struct Offsets {
  size_t padded, stream;
};
Offsets offsets(const RowMap& m, int64_t r, int64_t h, size_t es) {
  const int64_t b = r / m.padded_len, t = r % m.padded_len;
  return {static_cast<size_t>(((b * m.heads + h) * m.padded_len + t) * m.dim) * es,
          static_cast<size_t>(h * m.stream_strides.head + m.map[r] * m.stream_strides.seq) * es};
}

template <typename F>
void with_device_map(const RowMap& m, F&& run) {
#ifdef LIGHTRING_WITH_CUDA
  const auto stream = static_cast<cudaStream_t>(m.stream);
  int64_t* map = nullptr;
  LR_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&map), m.rows * sizeof(int64_t), stream));
  // From pageable memory: staged before the call returns, so `m.map` may go away after it.
  LR_CUDA_CHECK(
      cudaMemcpyAsync(map, m.map, m.rows * sizeof(int64_t), cudaMemcpyHostToDevice, stream));
  run(map);
  LR_CUDA_CHECK(cudaFreeAsync(map, stream));
#else
  (void)m;
  (void)run;
  LR_THROW("row maps on Device::kCuda: this build has no CUDA support");
#endif
}

}  // namespace

void gather_rows(const RowMap& m, const void* stream_rows, void* padded) {
  LR_CHECK(m.rows >= 0 && m.padded_len >= 1 && m.rows % m.padded_len == 0 && m.map,
           "gather_rows: bad row map");
  if (m.device == Device::kCuda) {
    with_device_map(m, [&](const int64_t* map) { cuda::gather_rows(m, map, stream_rows, padded); });
    return;
  }
  const size_t es = dtype_size(m.dtype), row = static_cast<size_t>(m.dim) * es;
  auto* dst = static_cast<char*>(padded);
  const auto* src = static_cast<const char*>(stream_rows);
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t h = 0; h < m.heads; ++h) {
      if (m.map[r] < 0) {
        const int64_t b = r / m.padded_len, t = r % m.padded_len;
        std::memset(dst + ((b * m.heads + h) * m.padded_len + t) * row, 0, row);
        continue;
      }
      const Offsets o = offsets(m, r, h, es);
      std::memcpy(dst + o.padded, src + o.stream, row);
    }
}

void scatter_rows(const RowMap& m, const void* padded, void* stream_rows) {
  LR_CHECK(m.rows >= 0 && m.padded_len >= 1 && m.rows % m.padded_len == 0 && m.map,
           "scatter_rows: bad row map");
  if (m.device == Device::kCuda) {
    with_device_map(m,
                    [&](const int64_t* map) { cuda::scatter_rows(m, map, padded, stream_rows); });
    return;
  }
  const size_t es = dtype_size(m.dtype), row = static_cast<size_t>(m.dim) * es;
  const auto* src = static_cast<const char*>(padded);
  auto* dst = static_cast<char*>(stream_rows);
  for (int64_t r = 0; r < m.rows; ++r) {
    if (m.map[r] < 0) continue;
    for (int64_t h = 0; h < m.heads; ++h) {
      const Offsets o = offsets(m, r, h, es);
      std::memcpy(dst + o.stream, src + o.padded, row);
    }
  }
}

}  // namespace lightring::kernels
