// Which scan kernels run a 16-bit scan with dk <= 256 (every pass of D, E <= 256 in bf16/fp16).
//
// Default (where v7 below does not run): the v6 kernels (scan_v6.cuh): X in
// registers, one CTA barrier per chunk, 16-warp output pass; measured in
// bench/NOTES.md (v6) against the 64-column kernels of scan_kernel.cuh ("v3")
// and the variants v4/v5 that led to it (removed after their measurement;
// their notes stay in NOTES.md). 128 < dk <= 256 runs v6 with 64-column slices
// and one copy of X (measured 2.0x v3 at D = E = 256, session 3).
// LIGHTRING_CUDA_VARIANT=v3 (read once per process) runs the v3 kernels on
// those shapes instead, so that benchmarks can compare both in one run. fp32
// inputs (TF32) always run the v3 kernels.
//
// v7 (scan_v7.cuh): those scans with dk <= 128 and 128-column slices, dk <= 64 and 64-column
// slices, or 128 < dk <= 256 (64-column slices, split-K over two warpgroups; session 5)
// (output and state passes) run on warpgroup MMAs (wgmma) when the library was built for
// sm_90a and the device is compute capability 9.0 (H100/H200). LIGHTRING_CUDA_VARIANT=v6 runs v6
// there instead (A/B benchmarks).
#pragma once

#include <cstdlib>
#include <cstring>

#include "kernels/dtype.h"
#include "kernels/error.h"

namespace lightring::kernels::cuda {

enum class Variant { kDefault, kV6, kV3 };

inline Variant variant() {
  static const Variant v = [] {
    const char* env = std::getenv("LIGHTRING_CUDA_VARIANT");
    if (!env || !*env || std::strcmp(env, "default") == 0) return Variant::kDefault;
    if (std::strcmp(env, "v6") == 0) return Variant::kV6;
    LR_CHECK(std::strcmp(env, "v3") == 0,
             "LIGHTRING_CUDA_VARIANT must be unset, 'default', 'v6' or 'v3' (got '", env, "')");
    return Variant::kV3;
  }();
  return v;
}

// Whether the v6 kernels run a scan of this element type and dims.
inline bool v6_covers(DType dtype, int dk, int /*dv*/) {
  return variant() != Variant::kV3 && dtype != DType::kFloat32 && dk <= 256;
}

// dv columns per v6 CTA (dk > 128: 64, so that the tiles fit in shared memory).
inline int v6_width(int dk, int dv) {
  return dk > 128 || dv <= 64 ? 64 : 128;
}

// Whether this build has sm_90a code (LIGHTRING_CUDA_SM90A, set by kernels/CMakeLists.txt) and
// the current device is compute capability 9.0 (cached per device; kernels/cuda/backend.cu).
bool sm90a_device();

// Whether the v7 kernels run a scan of this element type and dims (see above; the launcher
// also needs 16-byte aligned rows, else v6 runs).
inline bool v7_covers(DType dtype, int dk, int dv) {
  return variant() == Variant::kDefault && dtype != DType::kFloat32 &&
         (dk <= 64 || (dk <= 128 && v6_width(dk, dv) == 128) || (dk > 128 && dk <= 256)) &&
         sm90a_device();
}

}  // namespace lightring::kernels::cuda
