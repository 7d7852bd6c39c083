// scan(): dispatch of the chunked scan (scan.h) on the element type, and to
// the v6 kernels for the shapes they cover, and to the v7 kernels where they run (variant.h).
#include <cuda_runtime.h>

#include "kernels/cuda/scan.h"
#include "kernels/cuda/variant.h"
#include "kernels/error.h"

namespace lightring::kernels::cuda {

void scan_bf16(const ScanParams& p, cudaStream_t stream);
void scan_fp16(const ScanParams& p, cudaStream_t stream);
void scan_fp32(const ScanParams& p, cudaStream_t stream);
void scan_v6_bf16(const ScanParams& p, cudaStream_t stream);
void scan_v6_fp16(const ScanParams& p, cudaStream_t stream);
bool scan_v7_bf16(const ScanParams& p, cudaStream_t stream);
bool scan_v7_fp16(const ScanParams& p, cudaStream_t stream);

void scan(const ScanParams& p, void* stream_ptr) {
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  LR_CHECK(p.seg_len % kChunk == 0, "CUDA scan: seg_len must be a multiple of ", kChunk);
  if (v6_covers(p.dtype, p.dk, p.dv)) {
    if (p.dtype == DType::kBFloat16) {
      if (!scan_v7_bf16(p, stream)) scan_v6_bf16(p, stream);
      return;
    }
    if (p.dtype == DType::kFloat16) {
      if (!scan_v7_fp16(p, stream)) scan_v6_fp16(p, stream);
      return;
    }
  }
  switch (p.dtype) {
    case DType::kBFloat16:
      return scan_bf16(p, stream);
    case DType::kFloat16:
      return scan_fp16(p, stream);
    case DType::kFloat32:
      return scan_fp32(p, stream);
  }
  LR_THROW("CUDA scan: unsupported dtype");
}

}  // namespace lightring::kernels::cuda
