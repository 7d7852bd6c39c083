// The tf32 family (family.h): the chunked scan of scan.h for fp32 inputs on TF32 tensor cores
// (docs/algorithm.md §2):
//
//     O      = c_intra·[(Q Kᵀ) ⊙ M] V + c_inter·diag(λ^{r+1-σ}) Q X
//     X_next = λ^L X + c_state·Kᵀ diag(λ^{L-1-r+σ}) V
//
// One CTA of kWarps = 8 warps (the template also takes 4 or 16) owns one (b·h, segment, dv-slice of
// kEt columns) and walks the segment's 64-row chunks in order. Per chunk:
//   1. Q, K (all dk columns) and the V slice are loaded to shared memory
//      (cp.async, one or two stages), zero-padded to dkp = roundup(dk, 16)
//      columns and to 64 rows;
//   2. warp w owns rows 16·(w % 4)..+15 and column group w / 4 (all columns
//      with 4 warps, one half with 8, one quarter with 16): P = (Q Kᵀ ⊙ M)·c_intra
//      (causal 16×16 tiles only) goes to shared memory in the element type; O accumulates
//      Q X (X read from its element-type copy), its rows are scaled, then P V
//      is added; O is staged through shared memory and stored;
//   3. V rows are scaled in place by c_state·λ^{L-1-r+σ} and X (fp32 in
//      shared memory) is updated with Kᵀ(ΓV), warps splitting X's rows (and,
//      with 16 warps, its two column halves).
// X stays fp32 for the whole segment; only its operand copy is rounded to
// the element type (as FLA does), and all products accumulate in fp32.
// Shared memory: Q, K [64][dkp+pad], V [64][kEt+pad], P [64][max(64, kEt)+pad]
// (element type; P's rows also stage O),
// X [dkp][kEt+4] fp32 and its operand copy [dkp][kEt+pad], λ^0..λ^64.
//
// This header holds the kernel template and its launcher; scan_tf32.cu instantiates it for
// fp32, scan.cu dispatches. Its copy helpers (cp.async, tile loads, scan_grid) are shared by the
// mma and wgmma families.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>

#include "core/cuda_check.h"
#include "kernels/attention.h"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/scan.h"

namespace lightring::kernels::cuda {

namespace scan_tf32 {

__host__ __device__ constexpr int round_up(int x, int m) {
  return (x + m - 1) / m * m;
}
__host__ __device__ constexpr size_t align16(size_t x) {
  return (x + 15) / 16 * 16;
}

// Byte offsets of the shared-memory tiles of one CTA.
template <typename T, int kEt>
struct Layout {
  static constexpr int kPad = 16 / sizeof(T);  // one 16-byte vector per row: no ldmatrix conflicts
  int ldk, ldv, ldp, lds, ldst, stages;
  size_t q, k, v, stage_bytes, p, pw, s, st, total;
  __host__ __device__ Layout(int dkp, bool with_out, int num_stages) {
    ldk = dkp + kPad;
    ldv = kEt + kPad;
    ldp = (kEt > kChunk ? kEt : kChunk) + kPad;  // P is 64 wide; O staged in it is kEt wide
    lds = kEt + 4;
    ldst = sizeof(T) == 4 ? lds : kEt + kPad;
    stages = num_stages;
    // One stage: the Q, K and V tiles of one chunk; stage i at offset i * stage_bytes.
    size_t off = 0;
    q = off;
    off += with_out ? align16(sizeof(T) * kChunk * ldk) : 0;
    k = off;
    off += align16(sizeof(T) * kChunk * ldk);
    v = off;
    off += align16(sizeof(T) * kChunk * ldv);
    stage_bytes = off;
    off *= stages;
    p = off;
    off += with_out ? align16(sizeof(T) * kChunk * ldp) : 0;
    pw = off;
    off += align16(sizeof(float) * (kChunk + 1));
    s = off;
    off += align16(sizeof(float) * dkp * lds);
    st = sizeof(T) == 4 ? s : off;
    off += sizeof(T) == 4 ? 0 : align16(sizeof(T) * dkp * ldst);
    total = off;
  }
};

// Stages: two (the next chunk's tiles load while this one computes) unless one stage lets more
// CTAs share an SM. KernelTuning::tf32_stages = 1 or 2 forces a choice (benchmarks compare
// them; 2 falls back to 1 when it does not fit).
constexpr size_t kMaxSmem = 227 * 1024;  // dynamic shared memory one CTA may have (sm_90)

template <typename T, int kEt>
Layout<T, kEt> pick_layout(int dkp, bool with_out) {
  constexpr size_t kSmPerSm = 228 * 1024, kReserved = 1024;
  const int forced = kernel_tuning().tf32_stages;
  const Layout<T, kEt> one(dkp, with_out, 1), two(dkp, with_out, 2);
  if (two.total > kMaxSmem || forced == 1) return one;
  if (forced == 2) return two;
  const auto ctas = [](size_t bytes) { return kSmPerSm / (bytes + kReserved); };
  return ctas(two.total) >= ctas(one.total) ? two : one;
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// s[r][0..cols_pad) <- row r of the operand (rows: its row t0), columns col0 + [0, ncols), zero
// elsewhere and for rows r >= L. 16-byte cp.async for whole (or empty: zero-filling) vectors
// whose address is 16-byte aligned; element by element (synchronous) otherwise, partial vectors
// included: a 16-byte cp.async of the last 8 bytes of an allocation (src-size 8) is an
// out-of-bounds read to compute-sanitizer's memcheck.
template <typename T, int kThreads>
__device__ __forceinline__ void load_tile_async(T* s, int ld, int cols_pad, const T* rows,
                                                int64_t st, int L, int col0, int ncols) {
  constexpr int kVec = 16 / sizeof(T);
  const int vecs = cols_pad / kVec;
  for (int idx = threadIdx.x; idx < kChunk * vecs; idx += kThreads) {
    const int r = idx / vecs, c = (idx % vecs) * kVec;
    T* dst = s + r * ld + c;
    const int valid = r < L ? max(0, min(kVec, ncols - c)) : 0;
    const T* src = valid > 0 ? rows + r * st + col0 + c : rows;
    if ((reinterpret_cast<uintptr_t>(src) & 15) == 0 && (valid == kVec || valid == 0)) {
      cp_async16(dst, src, valid * static_cast<int>(sizeof(T)));
    } else {
      for (int j = 0; j < kVec; ++j) dst[j] = j < valid ? src[j] : from_f32<T>(0.0f);
    }
  }
}

// kMaxKt: an upper bound on dkp / 16 (4, 8 or 16), so that loops over k tiles unroll.
// kWarps: 4, 8 or 16 (16 needs kEt >= 64: four column groups of O, two of X).
template <typename T, int kEt, int kMaxKt, int kWarps, bool kOut>
__global__ void __launch_bounds__(kWarps * 32) scan_kernel(const ScanParams p) {
  constexpr int kThreads = kWarps * 32;
  constexpr int kCg = kWarps / 4;      // column groups: 1 or 2
  constexpr int kPNt = 8 / kCg;        // n8 tiles of P per warp
  constexpr int kONt = kEt / 8 / kCg;  // n8 tiles of O per warp
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kA = FragSize<T>::kA, kB = FragSize<T>::kB;
  constexpr int kNt = kEt / 8;               // n8 tiles of a dv slice
  constexpr int kXc = kWarps >= 16 ? 2 : 1;  // column groups of the X update
  constexpr int kXNt = kNt / kXc;            // n8 tiles of X per column group
  static_assert(kWarps == 4 || kWarps == 8 || kWarps == 16, "4, 8 or 16 warps");
  static_assert(kONt % 2 == 0 && kXNt % 2 == 0, "O and X blocks are whole n16 pairs");

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
  T* sP = reinterpret_cast<T*>(smem + lay.p);
  float* pw = reinterpret_cast<float*>(smem + lay.pw);
  float* sS = reinterpret_cast<float*>(smem + lay.s);
  T* sST = reinterpret_cast<T*>(smem + lay.st);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gq = lane >> 2, tq = lane & 3;

  // pw[n] = λ^n, n = 0..64: only bounded, non-negative exponents.
  const float s_h = p.decay ? p.decay[h] : 0.0f;
  for (int n = threadIdx.x; n <= kChunk; n += kThreads) pw[n] = expf(-s_h * static_cast<float>(n));

  // Entering state of this segment (zero for a state pass or a null pointer).
  for (int idx = threadIdx.x; idx < dkp * kEt; idx += kThreads) {
    const int i = idx / kEt, j = idx % kEt;
    float x = 0.0f;
    if (p.state_in.ptr && i < p.dk && j < ncols) {
      const StateRef& r = p.state_in;
      x = r.ptr[bh * r.sbh + seg * r.sg + i * r.si + (col0 + j) * r.sj];
    }
    sS[i * lay.lds + j] = x;
    if constexpr (sizeof(T) == 2) sST[i * lay.ldst + j] = from_f32<T>(x);
  }

  const T* q_rows = static_cast<const T*>(p.q.ptr) + b * p.q.sb + h * p.q.sh;
  const T* k_rows = static_cast<const T*>(p.k.ptr) + b * p.k.sb + h * p.k.sh;
  const T* v_rows = static_cast<const T*>(p.v.ptr) + b * p.v.sb + h * p.v.sh;
  T* o_rows = kOut ? static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh : nullptr;

  const int64_t t_begin = seg * p.seg_len;
  const int64_t t_end = min(p.seqlen, t_begin + p.seg_len);
  // Stage i % stages holds chunk i's tiles; with two stages chunk i+1 loads during chunk i.
  auto issue = [&](int64_t t0, int stage) {
    const int L = static_cast<int>(min(static_cast<int64_t>(kChunk), t_end - t0));
    unsigned char* base = smem + stage * lay.stage_bytes;
    if constexpr (kOut)
      load_tile_async<T, kThreads>(reinterpret_cast<T*>(base + lay.q), lay.ldk, dkp,
                                   q_rows + t0 * p.q.st, p.q.st, L, 0, p.dk);
    load_tile_async<T, kThreads>(reinterpret_cast<T*>(base + lay.k), lay.ldk, dkp,
                                 k_rows + t0 * p.k.st, p.k.st, L, 0, p.dk);
    load_tile_async<T, kThreads>(reinterpret_cast<T*>(base + lay.v), lay.ldv, kEt,
                                 v_rows + t0 * p.v.st, p.v.st, L, col0, ncols);
    cp_async_commit();
  };
  issue(t_begin, 0);
  int stage = 0;
  for (int64_t t0 = t_begin; t0 < t_end; t0 += kChunk, stage = (stage + 1) % lay.stages) {
    const int L = static_cast<int>(min(static_cast<int64_t>(kChunk), t_end - t0));
    const bool prefetch = lay.stages == 2 && t0 + kChunk < t_end;
    if (prefetch) {
      issue(t0 + kChunk, stage ^ 1);  // that stage's last reader finished before the barrier below
      cp_async_wait<1>();
    } else {
      if (lay.stages == 1 && t0 != t_begin)
        issue(t0, 0);  // the barrier ending the last chunk freed it
      cp_async_wait<0>();
    }
    __syncthreads();  // this chunk's tiles (and the initial state / X of the last chunk) are
                      // visible
    T* sQ = reinterpret_cast<T*>(smem + stage * lay.stage_bytes + lay.q);
    T* sK = reinterpret_cast<T*>(smem + stage * lay.stage_bytes + lay.k);
    T* sV = reinterpret_cast<T*>(smem + stage * lay.stage_bytes + lay.v);

    if constexpr (kOut) {
      const int rg = warp % 4, cg = warp / 4;  // row group, column group
      const int r0 = rg * 16;
      // P = (Q Kᵀ ⊙ M)·c_intra for rows r0..r0+15, columns 64/kCg·cg + [0, 64/kCg);
      // column tiles above the diagonal are skipped (they stay 0).
      float acc[kPNt][4] = {};
#pragma unroll
      for (int kt = 0; kt < kMaxKt; ++kt) {
        if (kt >= nkt) break;
        uint32_t a[kA];
        load_a<T, false>(a, sQ, lay.ldk, r0, kt * 16);
#pragma unroll
        for (int j = 0; j < kPNt / 2; ++j) {
          const int np = cg * (kPNt / 2) + j;
          if (np <= rg) {
            uint32_t bf[2 * kB];
            load_b<T, false>(bf, sK, lay.ldk, kt * 16, np * 16);
            mma<T>(acc[2 * j], a, bf);
            mma<T>(acc[2 * j + 1], a, bf + kB);
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kPNt; ++j) {
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int r = r0 + gq + hf * 8, c = (cg * kPNt + j) * 8 + 2 * tq;
          const float x0 = r >= c ? acc[j][2 * hf] * p.c_intra * pw[r - c] : 0.0f;
          const float x1 = r >= c + 1 ? acc[j][2 * hf + 1] * p.c_intra * pw[r - c - 1] : 0.0f;
          store_pair(sP + r * lay.ldp + c, x0, x1);
        }
      }

      // O = c_inter·diag(λ^{r+1-σ}) Q X + P V, columns kEt/kCg·cg + [0, kEt/kCg) of the slice.
      const int oc0 = cg * kONt * 8;
      float o[kONt][4] = {};
#pragma unroll
      for (int kt = 0; kt < kMaxKt; ++kt) {
        if (kt >= nkt) break;
        uint32_t a[kA];
        load_a<T, false>(a, sQ, lay.ldk, r0, kt * 16);
        mma_pairs<T, true, kONt / 2>(o, a, sST, lay.ldst, kt * 16, oc0);
      }
      const float w0 = p.c_inter * pw[r0 + gq + 1 - p.shift];
      const float w1 = p.c_inter * pw[r0 + gq + 9 - p.shift];
#pragma unroll
      for (int nt = 0; nt < kONt; ++nt) {
        o[nt][0] *= w0;
        o[nt][1] *= w0;
        o[nt][2] *= w1;
        o[nt][3] *= w1;
      }
      if constexpr (kCg == 1) {
        __syncwarp();  // this warp wrote every P column of its rows
      } else {
        __syncthreads();  // P rows are written by two warps
      }
#pragma unroll
      for (int kt = 0; kt < kChunk / 16; ++kt) {
        if (kt > rg) break;
        uint32_t a[kA];
        load_a<T, false>(a, sP, lay.ldp, r0, kt * 16);
        mma_pairs<T, true, kONt / 2>(o, a, sV, lay.ldv, kt * 16, oc0);
      }
      // Stage O through P's rows once every reader of P is done, then store this warp's block.
      if constexpr (kCg == 1) {
        __syncwarp();
      } else {
        __syncthreads();
      }
#pragma unroll
      for (int nt = 0; nt < kONt; ++nt) {
        store_pair(sP + (r0 + gq) * lay.ldp + oc0 + nt * 8 + 2 * tq, o[nt][0], o[nt][1]);
        store_pair(sP + (r0 + gq + 8) * lay.ldp + oc0 + nt * 8 + 2 * tq, o[nt][2], o[nt][3]);
      }
      __syncwarp();
      constexpr int kVec = 16 / sizeof(T);
      constexpr int kRowVecs = kEt / kCg / kVec;  // vectors per row of this warp's block
      for (int idx = lane; idx < 16 * kRowVecs; idx += 32) {
        const int r = r0 + idx / kRowVecs, c = oc0 + (idx % kRowVecs) * kVec;
        if (r >= L || c >= ncols) continue;
        T* dst = o_rows + (t0 + r) * p.o_st + col0 + c;
        const T* src = sP + r * lay.ldp + c;
        if (c + kVec <= ncols && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
          *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
        } else {
          for (int j = 0; j < kVec && c + j < ncols; ++j) dst[j] = src[j];
        }
      }
    }

    __syncthreads();  // every warp is done with V and with the operand copy of X
    // V rows <- c_state·λ^{L-1-r+σ}·V rows (rows >= L are zero).
    for (int idx = threadIdx.x; idx < L * kEt; idx += kThreads) {
      const int r = idx / kEt, c = idx % kEt;
      T* e = sV + r * lay.ldv + c;
      *e = from_f32<T>(to_f32(*e) * p.c_state * pw[L - 1 - r + p.shift]);
    }
    __syncthreads();
    // X = λ^L X + Kᵀ (ΓV): the work items are (row tile mt, column group xc) of X, with kXc
    // column groups of kEt / kXc columns; warp w owns items w, w + kWarps, ...
    const float decay_L = pw[L];
#pragma unroll
    for (int i = 0; i < (kMaxKt * kXc + kWarps - 1) / kWarps; ++i) {
      const int item = warp + i * kWarps;
      if (item >= nkt * kXc) break;
      const int m0 = item / kXc * 16;
      const int xc0 = item % kXc * kXNt * 8;
      float x[kXNt][4];
#pragma unroll
      for (int nt = 0; nt < kXNt; ++nt) {
        const float* s0 = sS + (m0 + gq) * lay.lds + xc0 + nt * 8 + 2 * tq;
        const float* s1 = s0 + 8 * lay.lds;
        x[nt][0] = decay_L * s0[0];
        x[nt][1] = decay_L * s0[1];
        x[nt][2] = decay_L * s1[0];
        x[nt][3] = decay_L * s1[1];
      }
#pragma unroll
      for (int kt = 0; kt < kChunk / 16; ++kt) {
        uint32_t a[kA];
        load_a<T, true>(a, sK, lay.ldk, m0, kt * 16);
        mma_pairs<T, true, kXNt / 2>(x, a, sV, lay.ldv, kt * 16, xc0);
      }
#pragma unroll
      for (int nt = 0; nt < kXNt; ++nt) {
        const int c = xc0 + nt * 8 + 2 * tq;
        float* s0 = sS + (m0 + gq) * lay.lds + c;
        float* s1 = s0 + 8 * lay.lds;
        s0[0] = x[nt][0];
        s0[1] = x[nt][1];
        s1[0] = x[nt][2];
        s1[1] = x[nt][3];
        if constexpr (sizeof(T) == 2) {
          store_pair(sST + (m0 + gq) * lay.ldst + c, x[nt][0], x[nt][1]);
          store_pair(sST + (m0 + gq + 8) * lay.ldst + c, x[nt][2], x[nt][3]);
        }
      }
    }
    __syncthreads();  // this stage's tiles are free for the chunk after next
  }

  if (p.state_out.ptr) {
    __syncthreads();
    const StateRef& r = p.state_out;
    for (int idx = threadIdx.x; idx < p.dk * kEt; idx += kThreads) {
      const int i = idx / kEt, j = idx % kEt;
      if (j < ncols)
        r.ptr[bh * r.sbh + seg * r.sg + i * r.si + (col0 + j) * r.sj] = sS[i * lay.lds + j];
    }
  }
}

// The grid of a state or output scan: x = (segment, dv slice of `width` columns), y = b·h.
inline dim3 scan_grid(const ScanParams& p, int width) {
  const int num_slices = (p.dv + width - 1) / width;
  const dim3 grid(num_slices * p.num_segs, static_cast<unsigned>(p.batch * p.heads));
  LR_CHECK(grid.y <= 65535u, "CUDA scan: batch*heads must be <= 65535 (got ", grid.y, ")");
  return grid;
}

template <typename T, int kEt, int kMaxKt, int kWarps, bool kOut>
void launch_with(ScanParams p, const Layout<T, kEt>& lay, cudaStream_t stream) {
  p.stages = lay.stages;
  auto* kernel = &scan_kernel<T, kEt, kMaxKt, kWarps, kOut>;
  LR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(lay.total)));
  kernel<<<scan_grid(p, kEt), kWarps * 32, lay.total, stream>>>(p);
  LR_CUDA_CHECK_LAUNCH("scan_kernel");
}

template <typename T, int kEt, int kMaxKt, int kWarps, bool kOut>
void launch(const ScanParams& p, cudaStream_t stream) {
  launch_with<T, kEt, kMaxKt, kWarps, kOut>(p, pick_layout<T, kEt>(round_up(p.dk, 16), kOut),
                                            stream);
}

template <typename T, int kEt, int kMaxKt>
void launch_mode(const ScanParams& p, cudaStream_t stream) {
  if (p.o) {
    launch<T, kEt, kMaxKt, 8, true>(p, stream);
  } else {
    launch<T, kEt, kMaxKt, 8, false>(p, stream);
  }
}

template <typename T, int kEt>
void launch_dims(const ScanParams& p, cudaStream_t stream) {
  const int nkt = round_up(p.dk, 16) / 16;
  if (nkt <= 4) return launch_mode<T, kEt, 4>(p, stream);
  if (nkt <= 8) return launch_mode<T, kEt, 8>(p, stream);
  launch_mode<T, kEt, 16>(p, stream);
}

}  // namespace scan_tf32
}  // namespace lightring::kernels::cuda
