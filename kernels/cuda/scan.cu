// scan(): dispatch of the chunked scan (scan.h) on the element type.
#include <cuda_runtime.h>

#include "kernels/cuda/scan.h"
#include "kernels/error.h"

namespace lightring::kernels::cuda {

void scan_bf16(const ScanParams& p, cudaStream_t stream);
void scan_fp16(const ScanParams& p, cudaStream_t stream);
void scan_fp32(const ScanParams& p, cudaStream_t stream);

void scan(const ScanParams& p, void* stream_ptr) {
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  LR_CHECK(p.seg_len % kChunk == 0, "CUDA scan: seg_len must be a multiple of ", kChunk);
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
