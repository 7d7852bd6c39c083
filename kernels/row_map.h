// Row gathers between a packed stream and a padded batch (kernels/documents_short.cpp): short
// document pieces of different lengths become the rows of one [n, H, Lp, dim] batch, each
// front-padded with zeros to Lp, so that they run as one batched sub-problem.
//
//   padded[b, h, t, :] = stream[h, map[b·Lp + t], :]   (zeros where map = -1)   gather_rows
//   stream[h, map[b·Lp + t], :] = padded[b, h, t, :]   (rows with map >= 0)     scatter_rows
//
// The stream is one [H, N, dim] sequence seen through strides (B = 1, last dim contiguous);
// the padded batch is contiguous. States use the same maps with heads = 1, Lp = 1 and
// dim = H·D·E (fp32). map is on the host; the CUDA versions upload it on `stream` and run one
// copy kernel, stream-ordered (no host synchronisation).
#pragma once

#include <cstdint>

#include "kernels/attention.h"

namespace lightring::kernels {

struct RowMap {
  Device device = Device::kCpu;
  DType dtype = DType::kFloat32;  // element type of both tensors
  void* stream = nullptr;
  int64_t rows = 0;        // n·Lp entries of map
  int64_t padded_len = 1;  // Lp
  int64_t heads = 1, dim = 0;
  Strides stream_strides;  // head and seq strides of the stream tensor, in elements
  const int64_t* map = nullptr;
};

void gather_rows(const RowMap& m, const void* stream_rows, void* padded);
void scatter_rows(const RowMap& m, const void* padded, void* stream_rows);

namespace cuda {
// kernels/cuda/row_map.cu; map is a device array of m.rows entries.
void gather_rows(const RowMap& m, const int64_t* device_map, const void* stream_rows, void* padded);
void scatter_rows(const RowMap& m, const int64_t* device_map, const void* padded,
                  void* stream_rows);
}  // namespace cuda

}  // namespace lightring::kernels
