// Code paths under test, chosen at run time by LIGHTRING_CUDA_VARIANT (read
// once per process). Unset or "default": the validated path. "v4": the variant
// described in bench/NOTES.md (v4), which the GPU tests and the benchmark run
// next to the default (bench/gpu_run.sh) until it is measured and either
// becomes the default or is removed. It is NOT a production fallback: a
// variant covers only the shapes it names (v4_covers) and every other scan of
// the same call runs the default kernels.
//
// v4 (for 16-bit inputs with dk <= 128 and dv > 64):
//   - one CTA owns kV4Width = 128 columns of dv (the whole E = 128), so QKᵀ,
//     P and the Q, K tile loads happen once per chunk instead of once per
//     64-column slice;
//   - 16 warps per CTA (4 row groups × 4 column groups of O; the X update is
//     split over X's row tiles and two column halves), one CTA per SM, two
//     cp.async stages (the next chunk loads while this one computes);
//   - segments sized so that the CTAs fill whole waves of one CTA per SM
//     (plan in backend.cu).
// Shapes outside v4_covers (fp32, dk > 128: X does not fit next to two
// stages; dv <= 64: nothing to share) run the default kernels.
//
// v5 (for 16-bit inputs with dk <= 128, any dv): the state X lives in
// registers (fp32, one tile per warp) and P never leaves registers; one CTA
// barrier per chunk; see scan_v5.cuh and bench/NOTES.md (v5).
#pragma once

#include <cstdlib>
#include <cstring>

#include "kernels/dtype.h"
#include "kernels/error.h"

namespace lightring::kernels::cuda {

enum class Variant { kDefault, kV4, kV5, kV6 };

inline Variant variant() {
  static const Variant v = [] {
    const char* env = std::getenv("LIGHTRING_CUDA_VARIANT");
    if (!env || !*env || std::strcmp(env, "default") == 0) return Variant::kDefault;
    if (std::strcmp(env, "v5") == 0) return Variant::kV5;
    if (std::strcmp(env, "v6") == 0) return Variant::kV6;
    LR_CHECK(std::strcmp(env, "v4") == 0, "LIGHTRING_CUDA_VARIANT must be unset, 'default', ",
             "'v4', 'v5' or 'v6' (got '", env, "')");
    return Variant::kV4;
  }();
  return v;
}

constexpr int kV4Width = 128;  // dv columns per CTA in v4

// Whether v4 runs a scan with these dims (see the top of this file).
inline bool v4_covers(DType dtype, int dk, int dv) {
  return variant() == Variant::kV4 && dtype != DType::kFloat32 && dk <= 128 && dv > 64;
}

// v5 (scan_v5.cuh): 16-bit inputs with dk <= 128, any dv, in slices of v5_width(dv) columns.
inline bool v5_covers(DType dtype, int dk, int /*dv*/) {
  return variant() == Variant::kV5 && dtype != DType::kFloat32 && dk <= 128;
}
// v6 (scan_v6.cuh): the same shapes as v5, with the same slices.
inline bool v6_covers(DType dtype, int dk, int /*dv*/) {
  return variant() == Variant::kV6 && dtype != DType::kFloat32 && dk <= 128;
}
inline int v5_width(int dv) {
  return dv <= 64 ? 64 : 128;
}

}  // namespace lightring::kernels::cuda
