// The copy kernels of kernels/row_map.h.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/row_map.h"

namespace lightring::kernels::cuda {

namespace {

struct Geometry {
  int64_t rows, padded_len, heads, dim, head_stride, seq_stride;
};

// One block per (row r, head h) pair, grid-strided over both; threads over the dim elements of
// the row (consecutive threads on consecutive elements: coalesced on both sides). kGather:
// padded <- stream (zero where map < 0); else stream <- padded (where map >= 0). The only
// divisions are one per (r, h) pair (64-bit division is slow on the GPU).
template <typename T, bool kGather>
__global__ void row_map_kernel(Geometry g, const int64_t* __restrict__ map, T* padded,
                               T* stream_rows) {
  for (int64_t r = blockIdx.x; r < g.rows; r += gridDim.x) {
    const int64_t src = map[r];
    if (!kGather && src < 0) continue;
    const int64_t b = r / g.padded_len, t = r - b * g.padded_len;
    for (int64_t h = blockIdx.y; h < g.heads; h += gridDim.y) {
      T* pad = padded + ((b * g.heads + h) * g.padded_len + t) * g.dim;
      T* row = stream_rows + h * g.head_stride + (src < 0 ? 0 : src) * g.seq_stride;
      for (int64_t j = threadIdx.x; j < g.dim; j += blockDim.x) {
        if (kGather) {
          pad[j] = src < 0 ? T(0) : row[j];
        } else {
          row[j] = pad[j];
        }
      }
    }
  }
}

template <bool kGather>
void launch(const RowMap& m, const int64_t* map, void* padded, void* stream_rows) {
  const Geometry g{m.rows, m.padded_len,          m.heads,
                   m.dim,  m.stream_strides.head, m.stream_strides.seq};
  if (g.rows == 0 || g.heads == 0 || g.dim == 0) return;
  const int threads = g.dim >= 256 ? 256 : 128;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(g.rows, 1 << 30)),
                  static_cast<unsigned>(std::min<int64_t>(g.heads, 65535)));
  const auto s = static_cast<cudaStream_t>(m.stream);
  if (dtype_size(m.dtype) == 4) {
    row_map_kernel<uint32_t, kGather><<<grid, threads, 0, s>>>(
        g, map, static_cast<uint32_t*>(padded), static_cast<uint32_t*>(stream_rows));
  } else {
    row_map_kernel<uint16_t, kGather><<<grid, threads, 0, s>>>(
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
