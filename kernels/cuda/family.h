// The three scan kernel families of the CUDA backend and which one runs a scan.
//
//   tf32   (scan_tf32.cuh)   fp32 inputs on TF32 tensor cores (mma.sync m16n8k8), 64-row
//                            chunks, 32-column slices; every GPU from sm_80.
//   mma    (scan_mma.cuh)    bf16 / fp16 inputs on mma.sync (m16n8k16), X in registers, one CTA
//                            barrier per chunk; every GPU from sm_80 (A100, L40, and the
//                            Hopper fallback); 128-column slices, 64 when dk > 128 or dv <= 64.
//   wgmma  (scan_wgmma.cuh)  bf16 / fp16 inputs on warpgroup MMAs; sm_90a builds running on
//                            compute capability 9.0 (H100, H200); also fuses the forward and dQ
//                            into one pass (Mode::kFused) and skips negligible chunks of state
//                            passes (the decay window).
//
// A 16-bit scan runs wgmma where wgmma_covers() and its rows are 16-byte aligned, else mma
// (which covers every dk, dv <= 256). KernelTuning::family = kMma forces mma (tests and A/B
// benchmarks of the sm_80 path on a Hopper GPU). The measurements behind these choices are in
// bench/NOTES.md.
#pragma once

#include "core/dtype.h"
#include "kernels/attention.h"

namespace lightring::kernels::cuda {

// Whether a scan of this element type runs one of the 16-bit families (mma or wgmma).
inline bool mma_covers(DType dtype, int dk) {
  return dtype != DType::kFloat32 && dk <= 256;
}

// dv columns per mma / wgmma CTA (dk > 128 or a narrow dv: 64, so that the tiles fit in shared
// memory and no CTA computes mostly padding).
inline int mma_width(int dk, int dv) {
  return dk > 128 || dv <= 64 ? 64 : 128;
}

// Whether this build has sm_90a code (LIGHTRING_CUDA_SM90A, set by kernels/CMakeLists.txt) and
// the current device is compute capability 9.0 (cached per device; kernels/cuda/backend.cu).
bool sm90a_device();

// Whether the wgmma family runs a scan of this element type and dims (the launcher also needs
// 16-byte aligned rows, else mma runs).
inline bool wgmma_covers(DType dtype, int dk, int dv) {
  (void)dv;  // every dv: slices of mma_width(dk, dv) columns
  return kernel_tuning().family == KernelTuning::Family::kAuto && mma_covers(dtype, dk) &&
         sm90a_device();
}

// The family that runs a scan with these parameters, for reports ("tf32", "mma", "wgmma").
const char* family_of(DType dtype, int dk, int dv);

}  // namespace lightring::kernels::cuda
