// scan(): dispatch of the chunked scan (scan.h) to its kernel family (family.h): tf32 for
// fp32 inputs; wgmma for 16-bit inputs where it runs, mma elsewhere.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/cuda/family.h"
#include "kernels/cuda/scan.h"

namespace lightring::kernels::cuda {

void scan_fp32(const ScanParams& p, cudaStream_t stream);
void scan_mma_bf16(const ScanParams& p, cudaStream_t stream);
void scan_mma_fp16(const ScanParams& p, cudaStream_t stream);
bool scan_wgmma_bf16(const ScanParams& p, cudaStream_t stream);
bool scan_wgmma_fp16(const ScanParams& p, cudaStream_t stream);

namespace {

// Whether every row of the operand starts 16-byte aligned (its pointer and strides).
bool aligned16(const Operand& x) {
  const auto bits = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(x.ptr)) |
                    static_cast<uint64_t>(x.sb * 2) | static_cast<uint64_t>(x.sh * 2) |
                    static_cast<uint64_t>(x.st * 2);
  return (bits & 15) == 0;
}

// Floats of one lane's state in the fused scan (the kernel's dk block times its slice width).
int64_t fused_state_floats(const ScanParams& p) {
  return (p.dk <= 64 ? 64 : p.dk <= 128 ? 128 : 256) * mma_width(p.dk, p.dv);
}

int64_t fused_lanes(const ScanParams& p) {
  const int width = mma_width(p.dk, p.dv);
  return p.batch * p.heads * ((p.dv + width - 1) / width);
}

// Ints before the ring: the ticket and one count per lane, rounded up to keep the ring 16-byte
// aligned.
int64_t fused_counters(const ScanParams& p) {
  return (1 + fused_lanes(p) + 3) / 4 * 4;
}

}  // namespace

bool wgmma_runs(const ScanParams& p) {
  return wgmma_covers(p.dtype, p.dk, p.dv) && (!p.o || aligned16(p.q)) && aligned16(p.k) &&
         aligned16(p.v);
}

bool fused_runs(const ScanParams& p) {
  return p.o && kernel_tuning().fused && wgmma_runs(p);
}

const char* family_of(DType dtype, int dk, int dv) {
  if (!mma_covers(dtype, dk)) return "tf32";
  return wgmma_covers(dtype, dk, dv) ? "wgmma" : "mma";
}

size_t fused_workspace_floats(const ScanParams& p) {
  return static_cast<size_t>(fused_counters(p) + 2 * fused_lanes(p) * fused_state_floats(p));
}

Chain fused_chain(float* ws, const ScanParams& p) {
  return Chain{reinterpret_cast<int*>(ws), ws + fused_counters(p)};
}

void scan(const ScanParams& p, void* stream_ptr) {
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  LR_CHECK(p.seg_len % kChunk == 0, "CUDA scan: seg_len must be a multiple of ", kChunk);
  LR_CHECK(!p.chain.counter || wgmma_runs(p), "CUDA scan: the fused scan needs the wgmma family");
  LR_CHECK(!p.docs.chunks || wgmma_runs(p),
           "CUDA scan: packed documents inside a scan need the wgmma family");
  switch (p.dtype) {
    case DType::kBFloat16:
      if (!scan_wgmma_bf16(p, stream)) scan_mma_bf16(p, stream);
      return;
    case DType::kFloat16:
      if (!scan_wgmma_fp16(p, stream)) scan_mma_fp16(p, stream);
      return;
    case DType::kFloat32:
      return scan_fp32(p, stream);
  }
  LR_THROW("CUDA scan: unsupported dtype");
}

}  // namespace lightring::kernels::cuda
