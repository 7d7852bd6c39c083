// The copy kernels of kernels/row_map.h: one thread per element, consecutive threads on
// consecutive elements of a row (coalesced on both sides), grid-stride.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/row_map.h"

namespace lightring::kernels::cuda {

namespace {

struct Geometry {
  int64_t total;  // rows · heads · dim elements
  int64_t padded_len, heads, dim, head_stride, seq_stride;
};

Geometry geometry(const RowMap& m) {
  return {m.rows * m.heads * m.dim, m.padded_len,        m.heads, m.dim,
          m.stream_strides.head,    m.stream_strides.seq};
}

// kGather: padded <- stream (zero where map < 0); else stream <- padded (where map >= 0).
template <typename T, bool kGather>
__global__ void row_map_kernel(Geometry g, const int64_t* __restrict__ map, T* padded,
                               T* stream_rows) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < g.total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i % g.dim, rh = i / g.dim, h = rh % g.heads, r = rh / g.heads;
    const int64_t b = r / g.padded_len, t = r % g.padded_len;
    const int64_t pi = ((b * g.heads + h) * g.padded_len + t) * g.dim + j;
    const int64_t src = map[r];
    if (kGather) {
      padded[pi] = src < 0 ? T(0) : stream_rows[h * g.head_stride + src * g.seq_stride + j];
    } else if (src >= 0) {
      stream_rows[h * g.head_stride + src * g.seq_stride + j] = padded[pi];
    }
  }
}

template <bool kGather>
void launch(const RowMap& m, const int64_t* map, void* padded, void* stream_rows) {
  const Geometry g = geometry(m);
  if (g.total == 0) return;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((g.total + threads - 1) / threads, 65535 * 8);
  const auto s = static_cast<cudaStream_t>(m.stream);
  if (dtype_size(m.dtype) == 4) {
    row_map_kernel<uint32_t, kGather><<<blocks, threads, 0, s>>>(
        g, map, static_cast<uint32_t*>(padded), static_cast<uint32_t*>(stream_rows));
  } else {
    row_map_kernel<uint16_t, kGather><<<blocks, threads, 0, s>>>(
        g, map, static_cast<uint16_t*>(padded), static_cast<uint16_t*>(stream_rows));
  }
  LR_CUDA_CHECK_LAUNCH("row_map_kernel");
}

}  // namespace

void gather_rows(const RowMap& m, const int64_t* device_map, const void* stream_rows,
                 void* padded) {
  launch<true>(m, device_map, padded, const_cast<void*>(stream_rows));
}

void scatter_rows(const RowMap& m, const int64_t* device_map, const void* padded,
                  void* stream_rows) {
  launch<false>(m, device_map, const_cast<void*>(padded), stream_rows);
}

}  // namespace lightring::kernels::cuda
