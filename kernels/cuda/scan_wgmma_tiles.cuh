// Building blocks of the wgmma family (scan_wgmma.cuh): the CTA shape (warpgroups), the
// 128-byte swizzled tile layout of wgmma.cuh, the shared-memory layout and stage counts, the
// cp.async tile loader, and the acquire/release flags of the fused scan's chain.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/scan_mma.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace lightring::kernels::cuda::scan_wgmma {

enum class Mode { kState, kOutput, kFused };

using namespace wgmma;
using scan_mma::pack2;
using scan_mma::scale2;

// Split-K (scan_wgmma.cuh): 64-column slices with a dk block of 128 or 256 rows; the two
// warpgroups share the dk sum instead of the O columns.
template <int kDk, int kEt>
constexpr bool split_k() {
  return kDk >= 128 && kEt == 64;
}

// Warpgroups per CTA: two for 128-column slices and under split-K, one for 64-column slices at
// dk <= 64 (two CTAs per SM instead).
template <int kDk, int kEt>
constexpr int warpgroups() {
  return kEt == 128 || split_k<kDk, kEt>() ? 2 : 1;
}

// Byte offset of element (r, c) in a swizzled tile of kRows rows stored as
// [64-column block][kRows][64] (wgmma.cuh: 16-byte chunk (c % 64) / 8 of row r at chunk ^ r % 8).
template <int kRows>
__device__ __forceinline__ uint32_t sw(int r, int c) {
  return (c >> 6) * (kRows * 128) + r * 128 + ((((c & 63) >> 3) ^ (r & 7)) << 4) + (c & 7) * 2;
}

// Shared memory of one CTA (offsets from a 1024-byte aligned base): kStages × {Q (output pass
// only), K [64][kDk], V [64][kEt]} swizzled; for the output pass the copies of X [kDk][kEt]
// swizzled (two, or one under split-K, where a warpgroup reads only the rows it writes), the O
// staging tile [64][kEt + 8], and under split-K the fp32 O exchange [2 × 4][128] float4;
// λ^0..λ^64. kDk = kEt = 128: output pass 3 × 48 + 64 + 17 KB = 226 KB; state pass 4 × 32 KB =
// 128 KB. kDk = 256, kEt = 64: output pass 2 × 72 + 32 + 9 + 16 KB = 202 KB; state pass
// 4 × 40 KB = 160 KB. kDk = 128, kEt = 64: output pass 3 × 40 + 16 + 9 + 16 KB = 161 KB; state
// pass 4 × 24 KB = 96 KB.
template <int kDk, int kEt, int kStages, bool kOut>
struct Layout {
  static constexpr bool split = split_k<kDk, kEt>();
  static constexpr uint32_t q = 0, k = q + (kOut ? kDk * 128 : 0), v = k + kDk * 128;
  static constexpr uint32_t stage_bytes = v + kEt * 128;
  static constexpr uint32_t x = kStages * stage_bytes;
  static constexpr uint32_t x_bytes = kOut ? kEt / 64 * kDk * 128 : 0;
  static constexpr int x_bufs = split ? 1 : 2;
  static constexpr int ldo = kEt + 8;
  static constexpr uint32_t o = x + x_bufs * x_bytes;
  static constexpr uint32_t red = o + (kOut ? 2 * kChunk * ldo : 0);
  static constexpr uint32_t pw = red + (kOut && split ? sizeof(float) * kChunk * kEt : 0);
  static constexpr size_t total = pw + sizeof(float) * 80 + 1024;  // + slack to align the base
};

// cp.async stages: the output pass fits three at dk = 128 (faster than two; bench/NOTES.md) and
// two at dk = 256; the state pass (32-40 KB per
// stage, memory-bound) keeps three chunks in flight with four. One CTA per SM for both (the
// state pass spills at the 128 registers two CTAs would allow).
template <int kDk, bool kOut>
constexpr int stages() {
  return kOut ? (kDk == 256 ? 2 : 3) : 4;
}

// Four 8×8 b16 matrices from registers to shared memory (sm_90): lane l gives the address of
// row l % 8 of matrix l / 8 (16 contiguous bytes); register i holds the lane's pair of matrix i
// (row l / 4, columns 2(l % 4) + {0, 1}): the layout of an m16n8 accumulator fragment pair.
__device__ __forceinline__ void stsm_x4(void* p, uint32_t r0, uint32_t r1, uint32_t r2,
                                        uint32_t r3) {
  asm volatile(
      "stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_addr(p)),
      "r"(r0), "r"(r1), "r"(r2), "r"(r3)
      : "memory");
}

// The rows of segment seg of a scan (scan.h): seg_len rows in 64-row chunks, or with packed
// documents (ScanParams::docs, chunks non-null) the table's chunks [first, first + num_chunks).
struct SegmentRows {
  const DocChunk* chunks = nullptr;
  int64_t t_begin = 0, t_end = 0;
  int first = 0, num_chunks = 0;
  // First row and rows of the segment's chunk c (the last one may be short; with documents any).
  __device__ __forceinline__ int64_t t0(int c) const {
    return chunks ? static_cast<int64_t>(__ldg(&chunks[first + c].t0))
                  : t_begin + static_cast<int64_t>(c) * kChunk;
  }
  __device__ __forceinline__ int len(int c) const {
    return chunks ? __ldg(&chunks[first + c].len)
                  : static_cast<int>(min(static_cast<int64_t>(kChunk), t_end - t0(c)));
  }
};

__device__ __forceinline__ SegmentRows segment_rows(const DocChunk* chunks, int count, int per_seg,
                                                    int64_t seg_len, int64_t seqlen, int seg) {
  SegmentRows r;
  r.chunks = chunks;
  if (chunks) {
    r.first = seg * per_seg;
    const int last = min(count, r.first + per_seg) - 1;
    r.t_begin = chunks[r.first].t0;
    r.t_end = static_cast<int64_t>(chunks[last].t0) + chunks[last].len;
    r.num_chunks = last - r.first + 1;
  } else {
    r.t_begin = seg * seg_len;
    r.t_end = min(seqlen, r.t_begin + seg_len);
    r.num_chunks = static_cast<int>((r.t_end - r.t_begin + kChunk - 1) / kChunk);
  }
  return r;
}

// Rows [0, L) of an operand (row 0 at `rows`, stride st elements, 16-byte aligned), columns
// col0 + [0, ncols), into a swizzled [64][kCols] tile; zero past ncols and L.
// A whole chunk (L = 64: every chunk but a segment's last) takes the short path: thread t's
// vectors lie kStep rows apart in one column, a multiple of 8 rows, so the swizzle phase r % 8
// and the shared-memory offset advance by constants, and the column's valid bytes (zero past
// ncols: partial dk blocks and dv slices) are the same for all of them (no per-vector bounds or
// swizzle arithmetic).
template <typename T, int kCols, int kThreads>
__device__ __forceinline__ void load_tile(unsigned char* s, const T* rows, int64_t st, int L,
                                          int col0, int ncols) {
  constexpr int kRowVecs = kCols / 8, kTotal = kChunk * kRowVecs;
  static_assert(kTotal % kThreads == 0, "whole vectors per thread");
  constexpr int kStep = kThreads / kRowVecs;  // rows between a thread's vectors
  static_assert(kThreads % kRowVecs == 0 && kStep % 8 == 0, "a constant swizzle phase per thread");
  if (L == kChunk) {
    const int r = threadIdx.x / kRowVecs, c = (threadIdx.x % kRowVecs) * 8;
    const int valid = max(0, min(8, ncols - c));
    // A column past ncols reads nothing (src-size 0) from row 0, a valid address.
    const T* src = valid > 0 ? rows + r * st + col0 + c : rows;
    const int64_t step = valid > 0 ? kStep * st : 0;
    const int bytes = valid * static_cast<int>(sizeof(T));
    unsigned char* dst = s + sw<kChunk>(r, c);
#pragma unroll
    for (int i = 0; i < kChunk / kStep; ++i)
      scan_tf32::cp_async16(dst + i * kStep * 128, src + i * step, bytes);
    return;
  }
#pragma unroll
  for (int i = 0; i < kTotal / kThreads; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = idx / kRowVecs, c = (idx % kRowVecs) * 8;
    const int valid = r < L ? max(0, min(8, ncols - c)) : 0;
    const T* src = valid > 0 ? rows + r * st + col0 + c : rows;
    scan_tf32::cp_async16(s + sw<kChunk>(r, c), src, valid * static_cast<int>(sizeof(T)));
  }
}

__device__ __forceinline__ int load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void store_release(int* p, int v) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

}  // namespace lightring::kernels::cuda::scan_wgmma
