// Launcher of variant v4 (variant.h, bench/NOTES.md): the scan kernel of
// scan_kernel.cuh with 128-column dv slices and 16 warps per CTA, two cp.async
// stages whenever they fit (they do for dk <= 128: 219.3 KiB for the output pass,
// 168.3 KiB for a state pass at dk = 128). A 16-warp CTA with over 100 KB of
// shared memory and up to 128 registers per thread holds an SM alone, so the
// occupancy rule of pick_layout (more CTAs per SM with one stage) does not
// apply; LIGHTRING_CUDA_STAGES=1 still forces one stage.
#pragma once

#include "kernels/cuda/scan_kernel.cuh"
#include "kernels/cuda/variant.h"

namespace lightring::kernels::cuda::scan_detail {

template <typename T, int kMaxKt, bool kOut>
void launch_v4_mode(const ScanParams& p, cudaStream_t stream) {
  constexpr int kEt = kV4Width, kWarps = 16;
  const int dkp = round_up(p.dk, 16);
  const Layout<T, kEt> one(dkp, kOut, 1), two(dkp, kOut, 2);
  LR_CHECK(one.total <= kMaxSmem, "CUDA scan v4: dk = ", p.dk, " does not fit (", one.total,
           " B of shared memory)");
  const bool two_fit = two.total <= kMaxSmem && forced_stages() != 1;
  launch_with<T, kEt, kMaxKt, kWarps, kOut>(p, two_fit ? two : one, stream);
}

// Runs p with the v4 kernels; the caller checked v4_covers(p.dtype, p.dk, p.dv).
template <typename T>
void launch_v4(const ScanParams& p, cudaStream_t stream) {
  static_assert(sizeof(T) == 2, "v4 covers 16-bit inputs only");
  LR_CHECK(p.dk <= 128, "CUDA scan v4: dk must be <= 128 (got ", p.dk, ")");
  const bool small = round_up(p.dk, 16) / 16 <= 4;
  if (p.o) {
    small ? launch_v4_mode<T, 4, true>(p, stream) : launch_v4_mode<T, 8, true>(p, stream);
  } else {
    small ? launch_v4_mode<T, 4, false>(p, stream) : launch_v4_mode<T, 8, false>(p, stream);
  }
}

}  // namespace lightring::kernels::cuda::scan_detail
