// Which scan kernels run a 16-bit scan with dk <= 128 (every pass of D, E <= 128 in bf16/fp16).
//
// Default: the v6 kernels (scan_v6.cuh): X in registers, one CTA barrier per
// chunk, 16-warp output pass; measured in bench/NOTES.md (v6) against the
// 64-column kernels of scan_kernel.cuh ("v3") and the variants v4/v5 that led
// to it (removed after their measurement; their notes stay in NOTES.md).
// LIGHTRING_CUDA_VARIANT=v3 (read once per process) runs the v3 kernels on
// those shapes instead, so that benchmarks can compare both in one run. fp32
// inputs (TF32) always run the v3 kernels, and so does dk > 128 unless
// LIGHTRING_CUDA_VARIANT=wide: v6 then also runs 128 < dk <= 256 (64-column
// slices, one copy of X; written without a GPU, NOT yet run on one: the GPU
// tests and the benchmark run it next to the default, bench/gpu_run.sh).
#pragma once

#include <cstdlib>
#include <cstring>

#include "kernels/dtype.h"
#include "kernels/error.h"

namespace lightring::kernels::cuda {

enum class Variant { kDefault, kV3, kWide };

inline Variant variant() {
  static const Variant v = [] {
    const char* env = std::getenv("LIGHTRING_CUDA_VARIANT");
    if (!env || !*env || std::strcmp(env, "default") == 0) return Variant::kDefault;
    if (std::strcmp(env, "wide") == 0) return Variant::kWide;
    LR_CHECK(std::strcmp(env, "v3") == 0, "LIGHTRING_CUDA_VARIANT must be unset, 'default', ",
             "'v3' or 'wide' (got '", env, "')");
    return Variant::kV3;
  }();
  return v;
}

// Whether the v6 kernels run a scan of this element type and dims.
inline bool v6_covers(DType dtype, int dk, int /*dv*/) {
  const Variant v = variant();
  const int max_dk = v == Variant::kWide ? 256 : 128;
  return v != Variant::kV3 && dtype != DType::kFloat32 && dk <= max_dk;
}

// dv columns per v6 CTA (dk > 128: 64, so that the tiles fit in shared memory).
inline int v6_width(int dk, int dv) {
  return dk > 128 || dv <= 64 ? 64 : 128;
}

}  // namespace lightring::kernels::cuda
