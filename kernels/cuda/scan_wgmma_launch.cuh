// Launchers of the wgmma family (scan_wgmma.cuh): grid, shared memory and the fused scan's
// counters per mode, and the dispatch of a scan to its (dk block, slice width) instantiation.
#pragma once

#include "kernels/cuda/scan_wgmma.cuh"

namespace lightring::kernels::cuda::scan_wgmma {

template <typename T, int kDk, int kEt, Mode kMode>
void launch(const ScanParams& p, cudaStream_t stream) {
  constexpr bool kOut = kMode != Mode::kState;
  using Lay = Layout<kDk, kEt, stages<kDk, kOut>(), kOut>;
  static_assert(Lay::total <= scan_tf32::kMaxSmem, "wgmma tiles exceed shared memory");
  auto* kernel = &scan_kernel<T, kDk, kEt, kMode>;
  LR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(Lay::total)));
  if constexpr (kMode == Mode::kFused) {
    // One CTA per (segment, b·h, slice), which it takes by ticket; the ticket and the lanes'
    // published counts start at 0.
    const int64_t lanes = p.batch * p.heads * ((p.dv + kEt - 1) / kEt);
    const int64_t ctas = lanes * p.num_segs;
    LR_CHECK(ctas < (int64_t{1} << 31), "CUDA fused scan: too many segments (", ctas, " CTAs)");
    LR_CUDA_CHECK(cudaMemsetAsync(p.chain.counter, 0, (1 + lanes) * sizeof(int), stream));
    kernel<<<static_cast<unsigned>(ctas), warpgroups<kDk, kEt>() * 128, Lay::total, stream>>>(p);
  } else {
    kernel<<<scan_tf32::scan_grid(p, kEt), warpgroups<kDk, kEt>() * 128, Lay::total, stream>>>(p);
  }
  LR_CUDA_CHECK_LAUNCH("scan_wgmma kernel");
}

template <typename T, int kDk, int kEt>
void launch_pass(const ScanParams& p, cudaStream_t stream) {
  if (p.chain.counter) return launch<T, kDk, kEt, Mode::kFused>(p, stream);
  p.o ? launch<T, kDk, kEt, Mode::kOutput>(p, stream)
      : launch<T, kDk, kEt, Mode::kState>(p, stream);
}

// Runs p (state, output or fused pass) with the wgmma family when it runs it (wgmma_runs); returns
// false otherwise (the caller runs the mma family).
template <typename T>
bool run(const ScanParams& p, cudaStream_t stream) {
  if (!wgmma_runs(p)) return false;
  if (p.dk > 128) {
    launch_pass<T, 256, 64>(p, stream);      // split-K (mma_width: 64-column slices)
  } else if (mma_width(p.dk, p.dv) == 64) {  // dv <= 64
    p.dk <= 64 ? launch_pass<T, 64, 64>(p, stream) : launch_pass<T, 128, 64>(p, stream);
  } else {
    p.dk <= 64 ? launch_pass<T, 64, 128>(p, stream) : launch_pass<T, 128, 128>(p, stream);
  }
  return true;
}

}  // namespace lightring::kernels::cuda::scan_wgmma
