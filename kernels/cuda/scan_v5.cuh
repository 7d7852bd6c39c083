// Variant v5 of the chunked scan (scan.h, variant.h): the same function as
// scan_kernel.cuh,
//
//     O      = c_intra·[(Q Kᵀ) ⊙ M] V + c_inter·diag(λ^{r+1-σ}) Q X
//     X_next = λ^L X + c_state·Kᵀ diag(λ^{L-1-r+σ}) V
//
// restructured so that a chunk costs one CTA barrier and no fp32 traffic
// through shared memory:
//   - X stays in registers for the whole segment (fp32 accumulators): warp w
//     owns the m16 row tiles (w % 4) + 4j of X and the column half w / 4;
//     the X update is an mma into those accumulators. Only X's element-type
//     copy (the B operand of Q X) goes to shared memory, double-buffered
//     (chunk c reads copy c % 2 while the update writes copy (c+1) % 2).
//   - P never leaves registers: warp w owns 16 rows of the chunk (row group
//     rg, balanced so that every SM sub-partition gets one short and one long
//     causal row group) and all 64 columns of P; the accumulator fragments of
//     Q Kᵀ are the A fragments of P V (as in FlashAttention-2). The two warps
//     of a row group each compute P (the price of keeping it in registers)
//     and own one half of the O columns.
//   - Γ = c_state·diag(λ^{L-1-r+σ}) scales the A fragments of Kᵀ in registers.
//   - Q, K and V tiles stream through kStages cp.async stages (2 for an output
//     pass, 3 for a state pass, which needs no copy of X); one barrier per
//     chunk makes chunk c's tiles and X copy visible and frees the stage
//     that chunk c + kStages - 1 loads into.
// One CTA of 8 warps owns one (b·h, segment, dv slice of kEt columns), as in
// scan_kernel.cuh; segments are sized for whole waves (backend.cu).
#pragma once

#include <type_traits>

#include "kernels/cuda/scan_kernel.cuh"
#include "kernels/cuda/variant.h"

namespace lightring::kernels::cuda::v5 {

using scan_detail::align16;
using scan_detail::cp_async_commit;
using scan_detail::cp_async_wait;
using scan_detail::load_tile_async;
using scan_detail::round_up;

constexpr int kWarps = 8, kThreads = kWarps * 32;

// Shared memory of one CTA: kStages × {Q (output pass only), K, V} tiles, then (output pass only)
// two element-type copies of X [dkp][kEt] and the O staging tile [64][kEt], then λ^0..λ^64.
template <typename T, int kEt>
struct Layout {
  static constexpr int kPad = 16 / sizeof(T);
  int ldk, ldv, ldx, stages;
  size_t q, k, v, stage_bytes, x, x_bytes, o, pw, total;
  __host__ __device__ Layout(int dkp, bool with_out, int num_stages) {
    ldk = dkp + kPad;
    ldv = kEt + kPad;
    ldx = kEt + kPad;
    stages = num_stages;
    size_t off = 0;
    q = off;
    off += with_out ? align16(sizeof(T) * kChunk * ldk) : 0;
    k = off;
    off += align16(sizeof(T) * kChunk * ldk);
    v = off;
    off += align16(sizeof(T) * kChunk * ldv);
    stage_bytes = off;
    off *= stages;
    x = off;
    x_bytes = with_out ? align16(sizeof(T) * dkp * ldx) : 0;
    off += 2 * x_bytes;
    o = off;
    off += with_out ? align16(sizeof(T) * kChunk * ldx) : 0;
    pw = off;
    off += align16(sizeof(float) * (kChunk + 1));
    total = off;
  }
};

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

// kMaxKt: an upper bound on dkp / 16 (4 or 8). kEt: dv columns per CTA (64 or 128).
template <typename T, int kEt, int kMaxKt, bool kOut>
__global__ void __launch_bounds__(kThreads, kOut ? 1 : 2) scan_kernel(const ScanParams p) {
  static_assert(sizeof(T) == 2, "v5 covers 16-bit inputs");
  static_assert(kMaxKt == 4 || kMaxKt == 8, "dk <= 64 or dk <= 128");
  constexpr int kEh = kEt / 2;      // columns of O and X per warp
  constexpr int kNt = kEh / 8;      // n8 tiles of those columns
  constexpr int kXMt = kMaxKt / 4;  // m16 tiles of X per warp
  extern __shared__ __align__(16) unsigned char smem[];

  const int num_slices = (p.dv + kEt - 1) / kEt;
  const int slice = blockIdx.x % num_slices;
  const int seg = blockIdx.x / num_slices;
  const int64_t bh = blockIdx.y;
  const int64_t b = bh / p.heads, h = bh % p.heads;
  const int dkp = round_up(p.dk, 16);
  const int nkt = dkp / 16;  // <= kMaxKt
  const int col0 = slice * kEt;
  const int ncols = min(kEt, p.dv - col0);
  const Layout<T, kEt> lay(dkp, kOut, p.stages);
  float* pw = reinterpret_cast<float*>(smem + lay.pw);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gq = lane >> 2, tq = lane & 3;
  const int half = warp / 4;  // column half of O and X: columns hc0 + [0, kEh)
  const int hc0 = half * kEh;
  const int rg = warp < 4 ? warp : 7 - warp;  // row group of O: rows r0 + [0, 16)
  const int r0 = rg * 16;

  const float s_h = p.decay ? p.decay[h] : 0.0f;
  for (int n = threadIdx.x; n <= kChunk; n += kThreads) pw[n] = expf(-s_h * static_cast<float>(n));

  // X tile j of this warp: rows 16·mt(j) + [0, 16), mt(j) = warp % 4 + 4j; columns hc0 + [0, kEh).
  // Fragment element e of n8 tile nt sits at row 16·mt + gq + 8·(e / 2), column hc0 + 8·nt + 2·tq
  // + e % 2 (the m16n8 accumulator layout).
  float x[kXMt][kNt][4];
#pragma unroll
  for (int j = 0; j < kXMt; ++j) {
    const int m0 = (warp % 4 + 4 * j) * 16;
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = m0 + gq + 8 * (e / 2), c = hc0 + nt * 8 + 2 * tq + e % 2;
        float v = 0.0f;
        if (p.state_in.ptr && i < p.dk && c < ncols) {
          const StateRef& r = p.state_in;
          v = r.ptr[bh * r.sbh + seg * r.sg + i * r.si + (col0 + c) * r.sj];
        }
        x[j][nt][e] = v;
      }
    }
  }
  // Element-type copy `buf` of X (the output pass's B operand of Q X), this warp's tiles.
  auto store_x = [&](int buf) {
    T* sX = reinterpret_cast<T*>(smem + lay.x + buf * lay.x_bytes);
#pragma unroll
    for (int j = 0; j < kXMt; ++j) {
      const int m0 = (warp % 4 + 4 * j) * 16;
      if (m0 >= dkp) break;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        const int c = hc0 + nt * 8 + 2 * tq;
        store_pair(sX + (m0 + gq) * lay.ldx + c, x[j][nt][0], x[j][nt][1]);
        store_pair(sX + (m0 + gq + 8) * lay.ldx + c, x[j][nt][2], x[j][nt][3]);
      }
    }
  };
  if constexpr (kOut) store_x(0);

  const T* q_rows = static_cast<const T*>(p.q.ptr) + b * p.q.sb + h * p.q.sh;
  const T* k_rows = static_cast<const T*>(p.k.ptr) + b * p.k.sb + h * p.k.sh;
  const T* v_rows = static_cast<const T*>(p.v.ptr) + b * p.v.sb + h * p.v.sh;
  T* o_rows = kOut ? static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh : nullptr;

  const int64_t t_begin = seg * p.seg_len;
  const int64_t t_end = min(p.seqlen, t_begin + p.seg_len);
  const int num_chunks = static_cast<int>((t_end - t_begin + kChunk - 1) / kChunk);
  // Chunk c's tiles go to stage c % stages; every thread commits one group per chunk slot
  // (empty past the end), so "chunk c landed" is cp.async.wait_group(stages - 2) at iteration c.
  auto issue = [&](int c) {
    if (c < num_chunks) {
      const int64_t t0 = t_begin + static_cast<int64_t>(c) * kChunk;
      const int L = static_cast<int>(min(static_cast<int64_t>(kChunk), t_end - t0));
      unsigned char* base = smem + (c % lay.stages) * lay.stage_bytes;
      if constexpr (kOut)
        load_tile_async<T, kThreads>(reinterpret_cast<T*>(base + lay.q), lay.ldk, dkp,
                                     q_rows + t0 * p.q.st, p.q.st, L, 0, p.dk);
      load_tile_async<T, kThreads>(reinterpret_cast<T*>(base + lay.k), lay.ldk, dkp,
                                   k_rows + t0 * p.k.st, p.k.st, L, 0, p.dk);
      load_tile_async<T, kThreads>(reinterpret_cast<T*>(base + lay.v), lay.ldv, kEt,
                                   v_rows + t0 * p.v.st, p.v.st, L, col0, ncols);
    }
    cp_async_commit();
  };
  for (int c = 0; c < lay.stages - 1; ++c) issue(c);

  for (int c = 0; c < num_chunks; ++c) {
    const int64_t t0 = t_begin + static_cast<int64_t>(c) * kChunk;
    const int L = static_cast<int>(min(static_cast<int64_t>(kChunk), t_end - t0));
    if (lay.stages == 3) {
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    // Chunk c's tiles, X's copy c % 2 and pw are visible; every warp is done with chunk c - 1,
    // so its stage ((c + stages - 1) % stages) and X copy (c + 1) % 2 are free.
    __syncthreads();
    issue(c + lay.stages - 1);
    const unsigned char* base = smem + (c % lay.stages) * lay.stage_bytes;
    const T* sK = reinterpret_cast<const T*>(base + lay.k);
    const T* sV = reinterpret_cast<const T*>(base + lay.v);

    if constexpr (kOut) {
      const T* sQ = reinterpret_cast<const T*>(base + lay.q);
      const T* sX = reinterpret_cast<const T*>(smem + lay.x + (c % 2) * lay.x_bytes);
      uint32_t qa[kMaxKt][4];
#pragma unroll
      for (int kt = 0; kt < kMaxKt; ++kt)
        if (kt < nkt) load_a<T, false>(qa[kt], sQ, lay.ldk, r0, kt * 16);

      // S = Q Kᵀ for rows r0 + [0, 16) and every column; n16 tiles above the diagonal are skipped.
      float s[8][4] = {};
#pragma unroll
      for (int kt = 0; kt < kMaxKt; ++kt) {
        if (kt >= nkt) break;
#pragma unroll
        for (int np = 0; np < 4; ++np) {
          if (np <= rg) {
            uint32_t bf[4];
            load_b<T, false>(bf, sK, lay.ldk, kt * 16, np * 16);
            mma<T>(s[2 * np], qa[kt], bf);
            mma<T>(s[2 * np + 1], qa[kt], bf + 2);
          }
        }
      }
      // P = c_intra·(S ⊙ M) with M[r][t] = λ^{r-t} for t <= r, as A fragments of k16 steps:
      // n8 tile 2kk (2kk+1) gives registers 0, 1 (2, 3) of step kk (rows gq and gq + 8).
      uint32_t pa[4][4];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int r = r0 + gq + 8 * hf, t = j * 8 + 2 * tq;
          const float v0 = r >= t ? s[j][2 * hf] * p.c_intra * pw[r - t] : 0.0f;
          const float v1 = r >= t + 1 ? s[j][2 * hf + 1] * p.c_intra * pw[r - t - 1] : 0.0f;
          pa[j / 2][(j % 2) * 2 + hf] = pack2<T>(v0, v1);
        }
      }

      // O = c_inter·diag(λ^{r+1-σ}) Q X + P V, columns hc0 + [0, kEh) of the slice.
      float o[kNt][4] = {};
#pragma unroll
      for (int kt = 0; kt < kMaxKt; ++kt) {
        if (kt >= nkt) break;
#pragma unroll
        for (int np = 0; np < kNt / 2; ++np) {
          uint32_t bf[4];
          load_b<T, true>(bf, sX, lay.ldx, kt * 16, hc0 + np * 16);
          mma<T>(o[2 * np], qa[kt], bf);
          mma<T>(o[2 * np + 1], qa[kt], bf + 2);
        }
      }
      const float w0 = p.c_inter * pw[r0 + gq + 1 - p.shift];
      const float w1 = p.c_inter * pw[r0 + gq + 9 - p.shift];
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        o[nt][0] *= w0;
        o[nt][1] *= w0;
        o[nt][2] *= w1;
        o[nt][3] *= w1;
      }
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        if (kk > rg) break;
#pragma unroll
        for (int np = 0; np < kNt / 2; ++np) {
          uint32_t bf[4];
          load_b<T, true>(bf, sV, lay.ldv, kk * 16, hc0 + np * 16);
          mma<T>(o[2 * np], pa[kk], bf);
          mma<T>(o[2 * np + 1], pa[kk], bf + 2);
        }
      }
      // Stage this warp's 16 × kEh block of O (only this warp touches it) and store whole rows.
      T* sO = reinterpret_cast<T*>(smem + lay.o);
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        const int cc = hc0 + nt * 8 + 2 * tq;
        store_pair(sO + (r0 + gq) * lay.ldx + cc, o[nt][0], o[nt][1]);
        store_pair(sO + (r0 + gq + 8) * lay.ldx + cc, o[nt][2], o[nt][3]);
      }
      __syncwarp();
      constexpr int kVec = 16 / sizeof(T);
      constexpr int kRowVecs = kEh / kVec;
#pragma unroll
      for (int idx = lane; idx < 16 * kRowVecs; idx += 32) {
        const int r = r0 + idx / kRowVecs, cc = hc0 + (idx % kRowVecs) * kVec;
        if (r >= L || cc >= ncols) continue;
        T* dst = o_rows + (t0 + r) * p.o_st + col0 + cc;
        const T* src = sO + r * lay.ldx + cc;
        if (cc + kVec <= ncols && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
          *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
        } else {
          for (int e = 0; e < kVec && cc + e < ncols; ++e) dst[e] = src[e];
        }
      }
      // The next writes to this block come after the next chunk's barrier.
    }

    // X = λ^L X + Kᵀ (Γ V) with Γ = c_state·diag(λ^{L-1-r+σ}) (0 for rows r >= L), applied to
    // the A fragments of Kᵀ: registers 0, 1 hold chunk rows 16kk + 2tq + {0, 1}, registers 2, 3
    // rows 16kk + 2tq + 8 + {0, 1}.
    const float decay_L = pw[L];
    float gam[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = kk * 16 + 2 * tq + (e / 2) * 8 + e % 2;
        gam[kk][e] = r < L ? p.c_state * pw[L - 1 - r + p.shift] : 0.0f;
      }
    }
#pragma unroll
    for (int j = 0; j < kXMt; ++j) {
      const int m0 = (warp % 4 + 4 * j) * 16;
      if (m0 >= dkp) break;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) x[j][nt][e] *= decay_L;
      }
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t a[4];
        load_a<T, true>(a, sK, lay.ldk, m0, kk * 16);
        a[0] = scale2<T>(a[0], gam[kk][0], gam[kk][1]);
        a[1] = scale2<T>(a[1], gam[kk][0], gam[kk][1]);
        a[2] = scale2<T>(a[2], gam[kk][2], gam[kk][3]);
        a[3] = scale2<T>(a[3], gam[kk][2], gam[kk][3]);
#pragma unroll
        for (int np = 0; np < kNt / 2; ++np) {
          uint32_t bf[4];
          load_b<T, true>(bf, sV, lay.ldv, kk * 16, hc0 + np * 16);
          mma<T>(x[j][2 * np], a, bf);
          mma<T>(x[j][2 * np + 1], a, bf + 2);
        }
      }
    }
    if constexpr (kOut) store_x((c + 1) % 2);
  }

  if (p.state_out.ptr) {
    const StateRef& r = p.state_out;
#pragma unroll
    for (int j = 0; j < kXMt; ++j) {
      const int m0 = (warp % 4 + 4 * j) * 16;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = m0 + gq + 8 * (e / 2), cc = hc0 + nt * 8 + 2 * tq + e % 2;
          if (i < p.dk && cc < ncols)
            r.ptr[bh * r.sbh + seg * r.sg + i * r.si + (col0 + cc) * r.sj] = x[j][nt][e];
        }
      }
    }
  }
}

template <typename T, int kEt, int kMaxKt, bool kOut>
void launch(ScanParams p, cudaStream_t stream) {
  const Layout<T, kEt> lay(round_up(p.dk, 16), kOut, kOut ? 2 : 3);
  LR_CHECK(lay.total <= scan_detail::kMaxSmem, "CUDA scan v5: dk = ", p.dk, ", dv slice ", kEt,
           " needs ", lay.total, " B of shared memory");
  p.stages = lay.stages;
  auto* kernel = &scan_kernel<T, kEt, kMaxKt, kOut>;
  LR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(lay.total)));
  const int num_slices = (p.dv + kEt - 1) / kEt;
  const dim3 grid(num_slices * p.num_segs, static_cast<unsigned>(p.batch * p.heads));
  LR_CHECK(grid.y <= 65535u, "CUDA scan: batch*heads must be <= 65535 (got ", grid.y, ")");
  kernel<<<grid, kThreads, lay.total, stream>>>(p);
  LR_CUDA_CHECK_LAUNCH("scan_kernel v5");
}

template <typename T, int kEt>
void launch_width(const ScanParams& p, cudaStream_t stream) {
  const bool small = round_up(p.dk, 16) / 16 <= 4;
  if (p.o) {
    small ? launch<T, kEt, 4, true>(p, stream) : launch<T, kEt, 8, true>(p, stream);
  } else {
    small ? launch<T, kEt, 4, false>(p, stream) : launch<T, kEt, 8, false>(p, stream);
  }
}

// Runs p with the v5 kernels; the caller checked v5_covers(p.dtype, p.dk, p.dv).
template <typename T>
void run(const ScanParams& p, cudaStream_t stream) {
  LR_CHECK(p.dk >= 1 && p.dk <= 128, "CUDA scan v5: dk must be in [1, 128] (got ", p.dk, ")");
  if (v5_width(p.dv) == 64) return launch_width<T, 64>(p, stream);
  launch_width<T, 128>(p, stream);
}

}  // namespace lightring::kernels::cuda::v5
