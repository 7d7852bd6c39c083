// The mma family (family.h): the chunked scan of scan.h for 16-bit inputs with
// dk <= 256 on mma.sync (sm_80 and later): the function of scan_tf32.cuh,
//
//     O      = c_intra·[(Q Kᵀ) ⊙ M] V + c_inter·diag(λ^{r+1-σ}) Q X
//     X_next = λ^L X + c_state·Kᵀ diag(λ^{L-1-r+σ}) V
//
// Structure: X stays fp32 in registers for the
// whole segment (the X update is an mma into them); only its element-type copy,
// the B operand of Q X, goes to shared memory, double-buffered (chunk c reads
// copy c % 2 while the update writes copy (c+1) % 2), so a chunk costs one CTA
// barrier. Γ = c_state·diag(λ^{L-1-r+σ}) scales the A fragments of Kᵀ in
// registers. The output pass (issue- and latency-bound with 8 warps; bench/NOTES.md)
//   - runs with 16 warps (4 per SM sub-partition instead of 2):
//     warp w owns row group rg and column quarter cq of O (rg = (w % 4 - cq) mod 4,
//     cq = w / 4, so each sub-partition gets every row group once);
//   - computes each 16×16 tile of P = c_intra·(Q Kᵀ ⊙ M) once: warp (rg, cq)
//     makes tile (rg, cq) (cq <= rg), stores it to shared memory, and the four
//     warps of a row group meet at a named barrier before P V;
//   - keeps the decay factors of its P tile and of Γ for a full chunk in
//     registers (computed once per CTA), and
//   - loads tiles with compile-time geometry (16-byte cp.async, a shift and a mask
//     per vector) instead of run-time divisions.
// The X update: warp w owns m16 tile w % kMaxKt of X and column group w / kMaxKt
// (kWarps / kMaxKt groups). The state pass (no output) runs 8 warps, 2 CTAs per SM,
// three cp.async stages. dk in (128, 256]: 64-column slices, one copy of X and 16 warps in
// both passes.
#pragma once

#include <type_traits>

#include "kernels/cuda/family.h"
#include "kernels/cuda/scan_tf32.cuh"

namespace lightring::kernels::cuda::scan_mma {

using scan_tf32::align16;
using scan_tf32::cp_async16;
using scan_tf32::cp_async_commit;
using scan_tf32::cp_async_wait;
using scan_tf32::round_up;

// Two floats -> one register of two elements (x in the low half), rounded to nearest.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float x, float y) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(x, y);
    return reinterpret_cast<uint32_t&>(v);
  } else {
    __half2 v = __floats2half2_rn(x, y);
    return reinterpret_cast<uint32_t&>(v);
  }
}

// One register of two elements -> (low, high) as floats.
template <typename T>
__device__ __forceinline__ float2 unpack2(uint32_t r) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return make_float2(__uint_as_float(r << 16), __uint_as_float(r & 0xffff0000u));
  } else {
    return __half22float2(__halves2half2(__ushort_as_half(static_cast<unsigned short>(r & 0xffffu)),
                                         __ushort_as_half(static_cast<unsigned short>(r >> 16))));
  }
}

// (a·low, b·high) of a register of two elements.
template <typename T>
__device__ __forceinline__ uint32_t scale2(uint32_t r, float a, float b) {
  const float2 f = unpack2<T>(r);
  return pack2<T>(f.x * a, f.y * b);
}

// Warps per CTA: 16 for an output pass; 8 for a state pass (2 CTAs per SM), 16 when dk > 128
// (one m16 tile of X per warp).
template <bool kOut, int kMaxKt>
constexpr int warps() {
  return kOut || kMaxKt == 16 ? 16 : 8;
}

// dk > 128: one copy of X (an extra barrier per chunk), 64-column slices.
template <bool kOut, int kMaxKt>
constexpr bool single_x() {
  return kOut && kMaxKt == 16;
}

// Shared memory of one CTA: kStages × {Q (output pass only), K, V} tiles; then, for an output
// pass, two copies of X [kMaxKt·16][kEt] (one when dk > 128), P [64][64] and the O staging tile
// [64][kEt]; λ^0..λ^64. At dk = 256, kEt = 64: 2 × 76.8 + 36.9 + 9.2 + 9.2 KB = 209 KB.
template <typename T, int kEt, int kMaxKt, bool kOut>
struct Layout {
  static constexpr int kPad = 16 / sizeof(T);
  static constexpr int kDk = kMaxKt * 16;  // tile columns of Q and K (zero past dk)
  static constexpr int ldk = kDk + kPad, ldv = kEt + kPad, ldx = kEt + kPad, ldp = kChunk + kPad;
  static constexpr size_t q = 0;
  static constexpr size_t k = q + (kOut ? align16(sizeof(T) * kChunk * ldk) : 0);
  static constexpr size_t v = k + align16(sizeof(T) * kChunk * ldk);
  static constexpr size_t stage_bytes = v + align16(sizeof(T) * kChunk * ldv);
  static constexpr int stages = kOut ? 2 : 3;
  static constexpr size_t x_bytes = kOut ? align16(sizeof(T) * kDk * ldx) : 0;
  static constexpr size_t x = stages * stage_bytes;
  static constexpr size_t p = x + (single_x<kOut, kMaxKt>() ? 1 : 2) * x_bytes;
  static constexpr size_t o = p + (kOut ? align16(sizeof(T) * kChunk * ldp) : 0);
  static constexpr size_t pw = o + (kOut ? align16(sizeof(T) * kChunk * ldx) : 0);
  static constexpr size_t total = pw + align16(sizeof(float) * (kChunk + 1));
};

// Rows t0 + [0, L) of an operand (rows = its row t0, stride st), columns col0 + [0, ncols), into a
// [64][kCols] tile, zero past ncols and L. `aligned`: rows and st are 16-byte aligned (uniform per
// CTA), else the element-wise loader of scan_tf32.cuh.
template <typename T, int kCols, int kThreads>
__device__ __forceinline__ void load_rows(T* s, int ld, const T* rows, int64_t st, int L, int col0,
                                          int ncols, bool aligned) {
  constexpr int kVec = 16 / sizeof(T), kRowVecs = kCols / kVec, kTotal = kChunk * kRowVecs;
  if (!aligned) {
    scan_tf32::load_tile_async<T, kThreads>(s, ld, kCols, rows, st, L, col0, ncols);
    return;
  }
#pragma unroll
  for (int i = 0; i < (kTotal + kThreads - 1) / kThreads; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    if (kTotal % kThreads != 0 && idx >= kTotal) break;
    const int r = idx / kRowVecs, c = (idx % kRowVecs) * kVec;
    const int valid = r < L ? max(0, min(kVec, ncols - c)) : 0;
    const T* src = valid > 0 ? rows + r * st + col0 + c : rows;
    cp_async16(s + r * ld + c, src, valid * static_cast<int>(sizeof(T)));
  }
}

__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

template <typename T>
__device__ __forceinline__ bool aligned16(const T* p, int64_t st) {
  return ((reinterpret_cast<uintptr_t>(p) | static_cast<uintptr_t>(st * sizeof(T))) & 15) == 0;
}

// kMaxKt: an upper bound on roundup(dk, 16) / 16 (4, 8, or 16 with kEt = 64). kEt: dv columns per
// CTA (64 or 128).
template <typename T, int kEt, int kMaxKt, bool kOut>
__global__ void __launch_bounds__(warps<kOut, kMaxKt>() * 32, warps<kOut, kMaxKt>() == 16 ? 1 : 2)
    scan_kernel(const ScanParams p) {
  static_assert(sizeof(T) == 2, "the mma family covers 16-bit inputs");
  static_assert(kMaxKt == 4 || kMaxKt == 8 || (kMaxKt == 16 && kEt == 64),
                "dk <= 64, dk <= 128, or dk <= 256 with 64-column slices");
  constexpr int kWarps = warps<kOut, kMaxKt>(), kThreads = kWarps * 32;
  constexpr bool kSingleX = single_x<kOut, kMaxKt>();
  using Lay = Layout<T, kEt, kMaxKt, kOut>;
  constexpr int kXg = kWarps / kMaxKt;  // column groups of X
  constexpr int kXNt = kEt / kXg / 8;   // n8 tiles of X per warp
  constexpr int kEq = kEt / 4;          // O columns per warp (output pass)
  constexpr int kQt = kEq / 8;          // n8 tiles of O per warp
  static_assert(kXNt % 2 == 0 && kQt % 2 == 0, "whole n16 pairs");
  extern __shared__ __align__(16) unsigned char smem[];

  const int num_slices = (p.dv + kEt - 1) / kEt;
  const int slice = blockIdx.x % num_slices;
  const int seg = blockIdx.x / num_slices;
  const int64_t bh = blockIdx.y;
  const int64_t b = bh / p.heads, h = bh % p.heads;
  const int nkt = round_up(p.dk, 16) / 16;  // <= kMaxKt
  const int col0 = slice * kEt;
  const int ncols = min(kEt, p.dv - col0);
  float* pw = reinterpret_cast<float*>(smem + Lay::pw);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gq = lane >> 2, tq = lane & 3;
  const int cq = warp / 4;                 // output pass: column quarter and P tile column
  const int rg = (warp % 4 - cq + 4) % 4;  // output pass: row group
  const int r0 = rg * 16, oc0 = cq * kEq;
  const int xm0 = (warp % kMaxKt) * 16;           // X rows xm0 + [0, 16)
  const int xc0 = (warp / kMaxKt) * (kEt / kXg);  // X columns xc0 + [0, kEt / kXg)

  const float s_h = p.decay ? p.decay[h] : 0.0f;
  for (int n = threadIdx.x; n <= kChunk; n += kThreads) pw[n] = expf(-s_h * static_cast<float>(n));
  // Decay factors that do not change from chunk to chunk: P tile (rg, cq), element (hf, j, e) at
  // row r0 + gq + 8hf, column 16cq + 8j + 2tq + e; Γ of a full chunk at the rows of the Kᵀ A
  // fragments (kk, e): 16kk + 2tq + 8(e / 2) + e % 2.
  float pf[2][2][2], gam[4][4];
#pragma unroll
  for (int hf = 0; hf < 2; ++hf)
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int d = r0 + gq + 8 * hf - (16 * cq + 8 * j + 2 * tq + e);
        pf[hf][j][e] = d >= 0 ? p.c_intra * expf(-s_h * static_cast<float>(d)) : 0.0f;
      }
  // The output pass keeps a full chunk's Γ in registers; the state pass (64 X accumulators per
  // thread, 2 CTAs per SM) reads it from pw every chunk.
  auto gammas = [&](int L, bool from_pw) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = kk * 16 + 2 * tq + (e / 2) * 8 + e % 2, n = L - 1 - r + p.shift;
        const float w = from_pw ? pw[max(n, 0)] : expf(-s_h * static_cast<float>(n));
        gam[kk][e] = r < L ? p.c_state * w : 0.0f;
      }
  };
  if constexpr (kOut) gammas(kChunk, false);

  // X tile: rows xm0 + gq + 8(e / 2), columns xc0 + 8nt + 2tq + e % 2 (m16n8 accumulators).
  float x[kXNt][4];
  const bool x_rows = xm0 < nkt * 16;
#pragma unroll
  for (int nt = 0; nt < kXNt; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = xm0 + gq + 8 * (e / 2), c = xc0 + nt * 8 + 2 * tq + e % 2;
      float v = 0.0f;
      if (p.state_in.ptr && i < p.dk && c < ncols) {
        const StateRef& r = p.state_in;
        v = r.ptr[bh * r.sbh + seg * r.sg + i * r.si + (col0 + c) * r.sj];
      }
      x[nt][e] = v;
    }
  auto store_x = [&](int buf) {
    if (!x_rows) return;
    T* sX = reinterpret_cast<T*>(smem + Lay::x + buf * Lay::x_bytes);
#pragma unroll
    for (int nt = 0; nt < kXNt; ++nt) {
      const int c = xc0 + nt * 8 + 2 * tq;
      store_pair(sX + (xm0 + gq) * Lay::ldx + c, x[nt][0], x[nt][1]);
      store_pair(sX + (xm0 + gq + 8) * Lay::ldx + c, x[nt][2], x[nt][3]);
    }
  };
  if constexpr (kOut) store_x(0);

  const T* q_rows = static_cast<const T*>(p.q.ptr) + b * p.q.sb + h * p.q.sh;
  const T* k_rows = static_cast<const T*>(p.k.ptr) + b * p.k.sb + h * p.k.sh;
  const T* v_rows = static_cast<const T*>(p.v.ptr) + b * p.v.sb + h * p.v.sh;
  T* o_rows = kOut ? static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh : nullptr;
  const bool q_al = kOut && aligned16(q_rows, p.q.st), k_al = aligned16(k_rows, p.k.st);
  const bool v_al = aligned16(v_rows + col0, p.v.st);

  const int64_t t_begin = seg * p.seg_len;
  const int64_t t_end = min(p.seqlen, t_begin + p.seg_len);
  const int num_chunks = static_cast<int>((t_end - t_begin + kChunk - 1) / kChunk);
  // Chunk c goes to stage c % stages; one commit group per chunk slot (empty past the end).
  auto issue = [&](int c) {
    if (c < num_chunks) {
      const int64_t t0 = t_begin + static_cast<int64_t>(c) * kChunk;
      const int L = static_cast<int>(min(static_cast<int64_t>(kChunk), t_end - t0));
      unsigned char* base = smem + (c % Lay::stages) * Lay::stage_bytes;
      if constexpr (kOut)
        load_rows<T, Lay::kDk, kThreads>(reinterpret_cast<T*>(base + Lay::q), Lay::ldk,
                                         q_rows + t0 * p.q.st, p.q.st, L, 0, p.dk, q_al);
      load_rows<T, Lay::kDk, kThreads>(reinterpret_cast<T*>(base + Lay::k), Lay::ldk,
                                       k_rows + t0 * p.k.st, p.k.st, L, 0, p.dk, k_al);
      load_rows<T, kEt, kThreads>(reinterpret_cast<T*>(base + Lay::v), Lay::ldv,
                                  v_rows + t0 * p.v.st, p.v.st, L, col0, ncols, v_al);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int c = 0; c < Lay::stages - 1; ++c) issue(c);

  for (int c = 0; c < num_chunks; ++c) {
    const int64_t t0 = t_begin + static_cast<int64_t>(c) * kChunk;
    const int L = static_cast<int>(min(static_cast<int64_t>(kChunk), t_end - t0));
    cp_async_wait<Lay::stages - 2>();
    // Chunk c's tiles, X copy c % 2 and pw are visible; every warp is done with chunk c - 1, so
    // its stage and X copy (c + 1) % 2, P and the O staging tile are free.
    __syncthreads();
    issue(c + Lay::stages - 1);
    if (!kOut || L < kChunk) gammas(L, true);
    const unsigned char* base = smem + (c % Lay::stages) * Lay::stage_bytes;
    const T* sK = reinterpret_cast<const T*>(base + Lay::k);
    const T* sV = reinterpret_cast<const T*>(base + Lay::v);

    if constexpr (kOut) {
      const T* sQ = reinterpret_cast<const T*>(base + Lay::q);
      const T* sX =
          reinterpret_cast<const T*>(smem + Lay::x + (kSingleX ? 0 : c % 2) * Lay::x_bytes);
      T* sP = reinterpret_cast<T*>(smem + Lay::p);
      // P tile (rg, cq) = c_intra·(Q Kᵀ ⊙ M), rows r0 + [0, 16), columns 16cq + [0, 16).
      if (cq <= rg) {
        float s[2][4] = {};
#pragma unroll
        for (int kt = 0; kt < kMaxKt; ++kt) {
          if (kt >= nkt) break;
          uint32_t a[4];
          load_a<T, false>(a, sQ, Lay::ldk, r0, kt * 16);
          mma_pairs<T, false, 1>(s, a, sK, Lay::ldk, kt * 16, cq * 16);
        }
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int hf = 0; hf < 2; ++hf)
            store_pair(sP + (r0 + gq + 8 * hf) * Lay::ldp + cq * 16 + j * 8 + 2 * tq,
                       s[j][2 * hf] * pf[hf][j][0], s[j][2 * hf + 1] * pf[hf][j][1]);
      }
      // O = c_inter·diag(λ^{r+1-σ}) Q X, columns oc0 + [0, kEq).
      float o[kQt][4] = {};
#pragma unroll
      for (int kt = 0; kt < kMaxKt; ++kt) {
        if (kt >= nkt) break;
        uint32_t a[4];
        load_a<T, false>(a, sQ, Lay::ldk, r0, kt * 16);
        mma_pairs<T, true, kQt / 2>(o, a, sX, Lay::ldx, kt * 16, oc0);
      }
      const float w0 = p.c_inter * pw[r0 + gq + 1 - p.shift];
      const float w1 = p.c_inter * pw[r0 + gq + 9 - p.shift];
#pragma unroll
      for (int nt = 0; nt < kQt; ++nt) {
        o[nt][0] *= w0;
        o[nt][1] *= w0;
        o[nt][2] *= w1;
        o[nt][3] *= w1;
      }
      named_barrier(1 + rg, 128);  // the row group's P tiles are in shared memory

      // O += P V over the causal k16 steps kk <= rg.
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        if (kk > rg) break;
        uint32_t a[4];
        load_a<T, false>(a, sP, Lay::ldp, r0, kk * 16);
        mma_pairs<T, true, kQt / 2>(o, a, sV, Lay::ldv, kk * 16, oc0);
      }
      // Stage this warp's 16 × kEq block (only this warp touches it) and store whole vectors.
      T* sO = reinterpret_cast<T*>(smem + Lay::o);
#pragma unroll
      for (int nt = 0; nt < kQt; ++nt) {
        const int cc = oc0 + nt * 8 + 2 * tq;
        store_pair(sO + (r0 + gq) * Lay::ldx + cc, o[nt][0], o[nt][1]);
        store_pair(sO + (r0 + gq + 8) * Lay::ldx + cc, o[nt][2], o[nt][3]);
      }
      __syncwarp();
      constexpr int kVec = 16 / sizeof(T), kRowVecs = kEq / kVec;
#pragma unroll
      for (int idx = lane; idx < 16 * kRowVecs; idx += 32) {
        const int r = r0 + idx / kRowVecs, cc = oc0 + (idx % kRowVecs) * kVec;
        if (r >= L || cc >= ncols) continue;
        T* dst = o_rows + (t0 + r) * p.o_st + col0 + cc;
        const T* src = sO + r * Lay::ldx + cc;
        if (cc + kVec <= ncols && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
          *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
        } else {
          for (int e = 0; e < kVec && cc + e < ncols; ++e) dst[e] = src[e];
        }
      }
    }

    // X = λ^L X + Kᵀ (Γ V), Γ applied to the A fragments of Kᵀ.
    if (x_rows) {
      const float decay_L = pw[L];
#pragma unroll
      for (int nt = 0; nt < kXNt; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) x[nt][e] *= decay_L;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t a[4];
        load_a<T, true>(a, sK, Lay::ldk, xm0, kk * 16);
        a[0] = scale2<T>(a[0], gam[kk][0], gam[kk][1]);
        a[1] = scale2<T>(a[1], gam[kk][0], gam[kk][1]);
        a[2] = scale2<T>(a[2], gam[kk][2], gam[kk][3]);
        a[3] = scale2<T>(a[3], gam[kk][2], gam[kk][3]);
        mma_pairs<T, true, kXNt / 2>(x, a, sV, Lay::ldv, kk * 16, xc0);
      }
    }
    if constexpr (kSingleX) {
      __syncthreads();  // every warp has read the one copy of X for this chunk (Q X above)
      store_x(0);
    } else if constexpr (kOut) {
      store_x((c + 1) % 2);
    }
  }

  if (p.state_out.ptr && x_rows) {
    const StateRef& r = p.state_out;
#pragma unroll
    for (int nt = 0; nt < kXNt; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = xm0 + gq + 8 * (e / 2), cc = xc0 + nt * 8 + 2 * tq + e % 2;
        if (i < p.dk && cc < ncols)
          r.ptr[bh * r.sbh + seg * r.sg + i * r.si + (col0 + cc) * r.sj] = x[nt][e];
      }
  }
}

template <typename T, int kEt, int kMaxKt, bool kOut>
void launch(ScanParams p, cudaStream_t stream) {
  using Lay = Layout<T, kEt, kMaxKt, kOut>;
  static_assert(Lay::total <= scan_tf32::kMaxSmem, "mma tiles exceed shared memory");
  auto* kernel = &scan_kernel<T, kEt, kMaxKt, kOut>;
  LR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(Lay::total)));
  kernel<<<scan_tf32::scan_grid(p, kEt), warps<kOut, kMaxKt>() * 32, Lay::total, stream>>>(p);
  LR_CUDA_CHECK_LAUNCH("scan_mma kernel");
}

template <typename T, int kEt, int kMaxKt>
void launch_pass(const ScanParams& p, cudaStream_t stream) {
  p.o ? launch<T, kEt, kMaxKt, true>(p, stream) : launch<T, kEt, kMaxKt, false>(p, stream);
}

// Runs p with the mma family; the caller checked mma_covers(p.dtype, p.dk).
template <typename T>
void run(const ScanParams& p, cudaStream_t stream) {
  LR_CHECK(p.dk >= 1 && p.dk <= 256, "CUDA scan (mma): dk must be in [1, 256] (got ", p.dk, ")");
  const int nkt = round_up(p.dk, 16) / 16;
  if (nkt > 8) {
    LR_CHECK(mma_width(p.dk, p.dv) == 64, "CUDA scan (mma): dk > 128 needs 64-column slices");
    return launch_pass<T, 64, 16>(p, stream);
  }
  if (mma_width(p.dk, p.dv) == 64)
    return nkt <= 4 ? launch_pass<T, 64, 4>(p, stream) : launch_pass<T, 64, 8>(p, stream);
  nkt <= 4 ? launch_pass<T, 128, 4>(p, stream) : launch_pass<T, 128, 8>(p, stream);
}

}  // namespace lightring::kernels::cuda::scan_mma
