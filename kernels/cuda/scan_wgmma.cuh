// The wgmma family (sm_90a; family.h): the output scan of scan.h on warpgroup MMAs (wgmma),
//
//     O      = c_intra·[(Q Kᵀ) ⊙ M] V + c_inter·diag(λ^{r+1-σ}) Q X
//     X_next = λ^L X + c_state·Kᵀ diag(λ^{L-1-r+σ}) V
//
// and the state pass (X only) for 16-bit inputs with dk <= 256: dk <= 128 with 128-column dv
// slices, dk <= 64 with 64-column slices, and split-K (below) for 64-column slices at
// 64 < dk <= 128 and at dk > 128 (family.h: mma_width picks the slice width). Inputs whose rows
// are not 16-byte aligned run the mma family. wgmma reads B (and A when it is in shared memory)
// once per 64-row warpgroup tile straight from shared memory instead of one ldmatrix per
// mma.sync fragment, the bound of the mma family's output pass (bench/NOTES.md).
//
// One CTA = two warpgroups (256 threads) owns one (b·h, segment, 128-column dv slice), like the mma
// family; with 64-column slices (dk <= 64) one warpgroup owns it and two CTAs share an SM. Per
// 64-row chunk, warpgroup g (warp w = 0..3 of it holds chunk rows 16w + [0, 16)):
//   S   = Q Kᵀ                  m64n64,  8 (dk = 128) k16 steps, A and B in shared memory
//   O   = Q X[:, 64g + [0, 64)]  m64n64,  B = X's element-type copy (N-major)
//   X_g = λ^L X_g + (Kᵀ Γ) V     m64n128, 4 k16 steps, A = Kᵀ rows 64g.. (ldmatrix.trans into
//                                registers, scaled by Γ there), B = V (N-major)
//   P   = c_intra·S ⊙ M·λ^{r-r'} in registers (decay factors of the thread's 32 elements are
//                                computed once per CTA), converted to A fragments
//   O   = diag(c_inter λ^{r+1-σ})·O + P V[:, 64g..]   m64n64, A = P in registers
// Both warpgroups compute S (64×64×128, 1/7 of the MMA work) so that P never leaves registers.
// With dk <= 64 each warpgroup owns all 64 rows of X and 64 of its columns instead.
// Split-K (64-column slices with a dk block of kDk = 128 or 256, two warpgroups): warpgroup g
// owns dk rows (kDk/2)g + [0, kDk/2) of X (kDk/128 m64 row tiles, 32 fp32 registers each) and
// computes the partial products over them: S_g = Q_g K_gᵀ, O_g = Q_g X_g (m64n64, kDk/32 k16 steps
// each), P_g = S_g ⊙ decay, O_g += P_g V; O = O_0 + O_1 (P is linear in S) through an fp32 exchange
// in shared memory, each warpgroup then storing 32 of the 64 columns. No MMA is duplicated (both S
// halves are needed), and since a warpgroup's Q X reads only the X rows it writes, one X copy is
// enough. X stays fp32 in registers for the whole segment; its element-type copy (double-buffered,
// written after the update) is the B operand of the next chunk's Q X. Tiles are stored in the
// 128-byte swizzled layout of wgmma.cuh ([64-column block][row][64]), loaded with 16-byte
// cp.async (two stages), so inputs must be 16-byte aligned (rows and strides; else the mma family
// runs). One CTA barrier per chunk; O is staged per warp through shared memory for 16-byte stores.
//
// Three modes (Mode): the state pass, the output pass, and the fused single-pass scan, whose CTA
// does both for its segment (docs/algorithm.md §3 inside the GPU without a separate state pass):
//   1. the local pair A_g of its segment from a zero state (the state pass, over K and V),
//      except in the last segment, whose A_g nothing reads;
//   2. the chain: waits until segment g-1 of its (b·h, slice) published its inclusive state
//      P_{g-1} (P_{-1} = the initial state), publishes P_g = λ^{L_g} P_{g-1} + A_g;
//   3. the output pass from X = P_{g-1}, re-reading K and V while they are still in L2.
// The last segment's CTAs therefore do less work than the others; evening it out by making that
// segment longer was slower (the kernel shares DRAM bandwidth more than it waits for its slowest
// CTA; bench/NOTES.md).
// The state phase runs the chunks last to first (A_g is a sum, order-free: chunk weights
// λ^{offset} fold into Γ), so the chunks the output phase reads first are the ones read last.
// State passes and phases stop at the decay window (ScanParams::window): chunks whose every term
// enters with a weight below e^-window (2^-64 by default) are not read; with the H = 32 slopes
// (s >= 2^-8) that is at most 179 chunks however long the segment.
// CTAs take their segments by ticket (an atomic counter) in segment-major order, so a CTA only
// waits for segments that CTAs already running hold: no deadlock whatever the block scheduling.
// P_g lives in a two-slot ring per (b·h, slice): segment g+2 overwrites P_g only after g+1 read it
// (g+1 publishes after reading, and g+2 reads that before writing).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/scan_wgmma_tiles.cuh"

namespace lightring::kernels::cuda::scan_wgmma {

// kState: the state pass (X only); kOutput: the output pass (O, and X's final state when asked);
// kFused: both for one segment, chained to the previous segment (see the top of this file).
template <typename T, int kDk, int kEt, Mode kMode>
__global__ void __launch_bounds__(warpgroups<kDk, kEt>() * 128, 3 - warpgroups<kDk, kEt>())
    scan_kernel(const ScanParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(sizeof(T) == 2 && ((kDk == 64 || kDk == 128) && (kEt == 64 || kEt == 128) ||
                                   (kDk == 256 && kEt == 64)),
                "wgmma shapes: dk <= 128 with 64- or 128-column slices, dk <= 256 with 64");
  constexpr bool kOut = kMode != Mode::kState;  // the Q and O tiles (output layout)
  constexpr bool kFused = kMode == Mode::kFused;
  constexpr bool kSplit = split_k<kDk, kEt>();  // the warpgroups share dk, not the O columns
  constexpr int kWgs = warpgroups<kDk, kEt>(), kThreads = kWgs * 128;
  constexpr int kStages = stages<kDk, kOut>();
  using Lay = Layout<kDk, kEt, kStages, kOut>;
  constexpr int kKt = kDk / 16 / (kSplit ? 2 : 1);    // k16 steps of Q Kᵀ and Q X per warpgroup
  constexpr int kEq = kSplit ? kEt : kEt / kWgs;      // O columns per warpgroup MMA
  constexpr int kOq = kEt / kWgs;                     // O columns each warpgroup stores
  constexpr int kXN = kDk >= 128 ? kEt : kEt / kWgs;  // X columns per warpgroup
  constexpr int kXM = kSplit ? kDk / 128 : 1;         // X row tiles (64 rows) per warpgroup
  constexpr int kXF = kXN / 2;                        // X floats per thread and row tile
  extern __shared__ __align__(16) unsigned char smem_raw[];  // aligned to 1024 below
  unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  const uint32_t sbase = smem_addr(smem);
  float* pw = reinterpret_cast<float*>(smem + Lay::pw);

  const int num_slices = (p.dv + kEt - 1) / kEt;
  int slice, seg;
  int64_t bh;
  if constexpr (kFused) {
    // The CTA's segment by ticket, segment-major: (seg, b·h, slice).
    int* ticket = reinterpret_cast<int*>(pw + 72);
    if (threadIdx.x == 0) *ticket = atomicAdd(p.chain.counter, 1);
    __syncthreads();
    const int64_t t = *ticket, bhs = p.batch * p.heads * num_slices;
    seg = static_cast<int>(t / bhs);
    bh = t % bhs / num_slices;
    slice = static_cast<int>(t % num_slices);
  } else {
    slice = blockIdx.x % num_slices;
    seg = blockIdx.x / num_slices;
    bh = blockIdx.y;
  }
  const int64_t b = bh / p.heads, h = bh % p.heads;
  const int col0 = slice * kEt;
  const int ncols = min(kEt, p.dv - col0);

  const int wg = threadIdx.x >> 7, wl = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  const int gq = lane >> 2, tq = lane & 3;
  const int row0 = 16 * wl;                       // chunk rows of this warp (S, P, O)
  const int oc0 = kOq * wg;                       // O columns this warpgroup stores
  const int mc0 = kSplit ? 0 : kEq * wg;          // O columns of this warpgroup's MMAs
  const int kt0 = kSplit ? kKt * wg : 0;          // first k16 step (dk) of its Q Kᵀ and Q X
  const int xr0 = kDk == 64 ? 0 : kXM * 64 * wg;  // X rows of this warpgroup
  const int xc0 = kDk == 64 ? kXN * wg : 0;       // X columns of this warpgroup

  const float s_h = p.decay ? p.decay[h] : 0.0f;
  for (int n = threadIdx.x; n <= kChunk; n += kThreads) pw[n] = expf(-s_h * static_cast<float>(n));
  // P = c_intra·S ⊙ M·λ^{i-j}: the factor of S element (j8, e) of this thread, row
  // i = row0 + gq + 8(e / 2), column j = 8·j8 + 2tq + e % 2 (0 above the diagonal).
  float pf[8][4];
  if constexpr (kOut) {
#pragma unroll
    for (int j8 = 0; j8 < 8; ++j8)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = row0 + gq + 8 * (e >> 1) - (8 * j8 + 2 * tq + (e & 1));
        pf[j8][e] = d >= 0 ? p.c_intra * expf(-s_h * static_cast<float>(d)) : 0.0f;
      }
  }
  // Γ of the Kᵀ A fragments for chunks of gam_len rows: k16 step kk, element e at token
  // 16kk + 2tq + 8(e / 2) + e % 2.
  float gam[4][4];
  int gam_len = 0;
  auto gammas = [&](int L, bool from_pw) {
    gam_len = L;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = kk * 16 + 2 * tq + (e / 2) * 8 + e % 2, n = L - 1 - r + p.shift;
        const float w = from_pw ? pw[max(n, 0)] : expf(-s_h * static_cast<float>(n));
        gam[kk][e] = r < L ? p.c_state * w : 0.0f;
      }
  };
  gammas(kChunk, false);

  // X accumulators x[kXF·m + 4j + e] (row tile m, 4-float group j = 4f / 4 with f < kXF / 4):
  // row xr0 + 64m + row0 + gq + 8(e / 2), column xc0 + 8j + 2tq + e % 2.
  float x[kXM * kXF];
  auto x_row = [&](int m, int e) { return xr0 + 64 * m + row0 + gq + 8 * (e >> 1); };
  auto x_col = [&](int j, int e) { return xc0 + 8 * j + 2 * tq + (e & 1); };
  // Element (m, j, e) of state g of r (0 outside dk × ncols or when r is unset).
  auto state_at = [&](const StateRef& r, int g, int m, int j, int e) {
    const int i = x_row(m, e), c = x_col(j, e);
    return r.ptr && i < p.dk && c < ncols
               ? r.ptr[bh * r.sbh + g * r.sg + i * r.si + (col0 + c) * r.sj]
               : 0.0f;
  };
#pragma unroll
  for (int m = 0; m < kXM; ++m)
#pragma unroll
    for (int j = 0; j < kXN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        x[kXF * m + 4 * j + e] = kMode == Mode::kOutput ? state_at(p.state_in, seg, m, j, e) : 0.0f;
  // stmatrix: lane l addresses row (l & 7) + 8·((l >> 3) & 1) of the warp's 16 rows, 8 columns
  // at fragment j + (l >> 4) of a fragment pair (j, j + 1); the registers are the pair's
  // (rows 0-7, j), (rows 8-15, j), (rows 0-7, j + 1), (rows 8-15, j + 1) halves.
  const int sm_row = row0 + (lane & 7) + 8 * ((lane >> 3) & 1), sm_col = 8 * (lane >> 4);
  auto store_x = [&](int buf) {
    unsigned char* sX = smem + Lay::x + buf * Lay::x_bytes;
#pragma unroll
    for (int m = 0; m < kXM; ++m)
#pragma unroll
      for (int j = 0; j < kXN / 8; j += 2) {
        const float* f = x + kXF * m + 4 * j;
        stsm_x4(sX + sw<kDk>(xr0 + 64 * m + sm_row, xc0 + 8 * j + sm_col), pack2<T>(f[0], f[1]),
                pack2<T>(f[2], f[3]), pack2<T>(f[4], f[5]), pack2<T>(f[6], f[7]));
      }
  };

  const T* q_rows = static_cast<const T*>(p.q.ptr) + b * p.q.sb + h * p.q.sh;
  const T* k_rows = static_cast<const T*>(p.k.ptr) + b * p.k.sb + h * p.k.sh;
  const T* v_rows = static_cast<const T*>(p.v.ptr) + b * p.v.sb + h * p.v.sh;
  T* o_rows = kOut ? static_cast<T*>(p.o) + b * p.o_sb + h * p.o_sh : nullptr;
  // O rows and their stride allow 16-byte stores at every slice (uniform per CTA).
  const bool o_aligned =
      kOut && ((reinterpret_cast<uintptr_t>(o_rows + col0) |
                static_cast<uintptr_t>(p.o_st * static_cast<int64_t>(sizeof(T)))) &
               15) == 0;

  // The segment's rows and chunks (with packed documents, ScanParams::docs, the table's).
  const DocChunks& dc = p.docs;
  const bool docs = dc.chunks != nullptr;
  const SegmentRows rows = segment_rows(dc.chunks, dc.count, dc.per_seg, p.seg_len, p.seqlen, seg);
  const int64_t t_begin = rows.t_begin, t_end = rows.t_end;
  const int first = rows.first, num_chunks = rows.num_chunks;

  // Descriptors (wgmma.cuh): K-major tiles advance 32 bytes per k16 step inside a 64-column
  // block and 64·128 bytes per block; N-major tiles 2048 bytes per k16 step.
  auto kmajor = [](uint32_t tile, int kt) {
    return desc_sw128(tile + (kt >> 2) * (kChunk * 128) + (kt & 3) * 32, 16, 1024);
  };
  auto nmajor = [](uint32_t tile, int kt, uint32_t block_bytes) {
    return desc_sw128(tile + kt * 2048, block_bytes, 1024);
  };
  auto chunk_len = [&](int cc) { return rows.len(cc); };
  auto chunk_t0 = [&](int cc) { return rows.t0(cc); };
  // Documents: x <- init[d] (0 without initial states), and final[d] <- x.
  auto reset_x = [&](int d) {
    const StateRef r{dc.init.ref.ptr ? dc.init.ref.ptr + d * dc.init.doc_stride : nullptr,
                     dc.init.ref.sbh, 0, dc.init.ref.si, dc.init.ref.sj};
#pragma unroll
    for (int m = 0; m < kXM; ++m)
#pragma unroll
      for (int j = 0; j < kXN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) x[kXF * m + 4 * j + e] = state_at(r, 0, m, j, e);
  };
  auto write_x = [&](const StateRef& r, int g) {
#pragma unroll
    for (int m = 0; m < kXM; ++m)
#pragma unroll
      for (int j = 0; j < kXN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = x_row(m, e), c = x_col(j, e);
          if (i < p.dk && c < ncols)
            r.ptr[bh * r.sbh + g * r.sg + i * r.si + (col0 + c) * r.sj] = x[kXF * m + 4 * j + e];
        }
  };
  auto scale_x = [&](float w) {
#pragma unroll
    for (int i = 0; i < kXM * kXF; ++i) x[i] *= w;
  };

  // The state phase's chunks (the decay window, ScanParams::window): the c-th chunk from the end
  // has at least 64(c - 1) rows after each of its rows, so its terms carry weights
  // λ^d <= e^{-s·64(c-1)}; it runs while s·64(c - 1) < window, i.e. c < 2 + window / (64 s).
  // With documents the phase also stops after the last chunk that starts a document (nothing
  // before it reaches the state; start_chunk >= 0 then names it, and its document's initial
  // state enters with weight λ^{rows from its first row to the segment's end}).
  int start_chunk = -1;
  const int state_chunks = [&] {
    if (docs) {
      int c = 0;
      while (c < num_chunks) {
        const DocChunk e = dc.chunks[first + num_chunks - 1 - c];
        const int64_t after = t_end - e.t0 - e.len;
        if (p.window > 0.0f && s_h * static_cast<float>(after) >= p.window) break;
        ++c;
        if (e.start_doc >= 0) {
          start_chunk = num_chunks - c;
          break;
        }
      }
      return c;
    }
    if (p.window <= 0.0f || s_h <= 0.0f) return num_chunks;
    const float c = 2.0f + p.window / (s_h * static_cast<float>(kChunk));
    return c < static_cast<float>(num_chunks) ? static_cast<int>(c) : num_chunks;
  }();

  // One pass over the segment's chunks. The output phase (kO) runs them first to last from the
  // X in registers: O, and X after each chunk. The state phase adds each chunk's
  // λ^{offset}·(Kᵀ Γ) V into X, offset = rows of the segment after the chunk, last chunk first,
  // over the decay window's chunks only. before_loop runs once the first stages are issued.
  auto run = [&](auto out_phase, auto before_loop) {
    constexpr bool kO = decltype(out_phase)::value;
    const int n_run = kO ? num_chunks : state_chunks;
    auto chunk_at = [&](int c) { return kO ? c : num_chunks - 1 - c; };
    auto issue = [&](int c) {
      if (c < n_run) {
        const int cc = chunk_at(c);
        const int64_t t0 = chunk_t0(cc);
        const int L = chunk_len(cc);
        unsigned char* base = smem + (c % kStages) * Lay::stage_bytes;
        if constexpr (kO)
          load_tile<T, kDk, kThreads>(base + Lay::q, q_rows + t0 * p.q.st, p.q.st, L, 0, p.dk);
        load_tile<T, kDk, kThreads>(base + Lay::k, k_rows + t0 * p.k.st, p.k.st, L, 0, p.dk);
        load_tile<T, kEt, kThreads>(base + Lay::v, v_rows + t0 * p.v.st, p.v.st, L, col0, ncols);
      }
      scan_tf32::cp_async_commit();
    };
#pragma unroll
    for (int c = 0; c < kStages - 1; ++c) issue(c);
    before_loop();

    // X is scaled by λ^L of a chunk before its update is issued, outside the MMA window (ptxas
    // would otherwise wait for the chunk's first MMAs before the scaling).
    if constexpr (kO)
      if (num_chunks > 0) scale_x(expf(-s_h * static_cast<float>(chunk_len(0))));

    float s[32], o[kEq / 2];
    if constexpr (kO) {
#pragma unroll
      for (int i = 0; i < 32; ++i) s[i] = 0.0f;
#pragma unroll
      for (int i = 0; i < kEq / 2; ++i) o[i] = 0.0f;
    }

    for (int c = 0; c < n_run; ++c) {
      const int cc = chunk_at(c);
      const int64_t t0 = chunk_t0(cc);
      const int L = chunk_len(cc);
      scan_tf32::cp_async_wait<kStages - 2>();
      fence_proxy_async();
      // Chunk c's tiles, X copy c % 2 and pw are visible to both proxies; every warpgroup is
      // done with chunk c - 1 (its MMAs waited for), so its stage and X copy (c + 1) % 2 are free.
      __syncthreads();
      issue(c + kStages - 1);
      if (L != gam_len) gammas(L, true);
      const uint32_t st = sbase + (c % kStages) * Lay::stage_bytes;
      const uint32_t xq = sbase + Lay::x + (c % Lay::x_bufs) * Lay::x_bytes;

      // Output phase, group 1: S = Q Kᵀ; group 2: O = Q X (this warpgroup's columns).
      if constexpr (kO) {
        wgmma_fence();
#pragma unroll
        for (int kt = 0; kt < kKt; ++kt)
          wgmma_ss<T, 64, 0>(s, kmajor(st + Lay::q, kt0 + kt), kmajor(st + Lay::k, kt0 + kt),
                             kt > 0);
        wgmma_commit();
#pragma unroll
        for (int kt = 0; kt < kKt; ++kt)
          wgmma_ss<T, kEq, 1>(o, kmajor(st + Lay::q, kt0 + kt),
                              nmajor(xq + (mc0 >> 6) * kDk * 128, kt0 + kt, kDk * 128), kt > 0);
        wgmma_commit();
      }

      // Group 3 (the state phase: its only group): X += (Kᵀ Γ) V, Γ applied to the Kᵀ fragments
      // in registers (output phase: X was scaled by λ^L at the end of the previous chunk, where
      // no MMA is in flight; state phase: Γ carries λ^{offset} instead).
      float wo = 1.0f;
      if constexpr (!kO) wo = expf(-s_h * static_cast<float>(t_end - t0 - L));
      uint32_t ka[kXM][4][4];
      {
        const unsigned char* sK = smem + (c % kStages) * Lay::stage_bytes + Lay::k;
        const int mi = lane >> 3, rr = lane & 7;
#pragma unroll
        for (int m = 0; m < kXM; ++m)
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            uint32_t* a = ka[m][kk];
            ldsm_x4_trans(a, sK + sw<kChunk>(16 * kk + 8 * (mi >> 1) + rr,
                                             xr0 + 64 * m + row0 + 8 * (mi & 1)));
            float g0 = gam[kk][0], g1 = gam[kk][1], g2 = gam[kk][2], g3 = gam[kk][3];
            if constexpr (!kO) g0 *= wo, g1 *= wo, g2 *= wo, g3 *= wo;
            a[0] = scale2<T>(a[0], g0, g1);
            a[1] = scale2<T>(a[1], g0, g1);
            a[2] = scale2<T>(a[2], g2, g3);
            a[3] = scale2<T>(a[3], g2, g3);
          }
      }
      wgmma_fence();
#pragma unroll
      for (int m = 0; m < kXM; ++m)
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
          wgmma_rs<T, kXN, 1>(x + kXF * m, ka[m][kk],
                              nmajor(st + Lay::v + (xc0 >> 6) * (kChunk * 128), kk, kChunk * 128),
                              true);
      wgmma_commit();

      if constexpr (kO) {
        // P from S (group 1) into A fragments: k16 step kk covers S columns 16kk + [0, 16).
        wgmma_wait<2>();
        fence_regs<32>(s);
        uint32_t pa[4][4];
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int j8 = 2 * kk + half;
            pa[kk][2 * half] = pack2<T>(s[4 * j8] * pf[j8][0], s[4 * j8 + 1] * pf[j8][1]);
            pa[kk][2 * half + 1] = pack2<T>(s[4 * j8 + 2] * pf[j8][2], s[4 * j8 + 3] * pf[j8][3]);
          }
        // O rows scaled by c_inter·λ^{r+1-σ} (group 2), then group 4: O += P V.
        wgmma_wait<1>();
        fence_regs<kEq / 2>(o);
        const float w0 = p.c_inter * pw[row0 + gq + 1 - p.shift];
        const float w1 = p.c_inter * pw[row0 + gq + 9 - p.shift];
#pragma unroll
        for (int j = 0; j < kEq / 8; ++j) {
          o[4 * j] *= w0;
          o[4 * j + 1] *= w0;
          o[4 * j + 2] *= w1;
          o[4 * j + 3] *= w1;
        }
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
          wgmma_rs<T, kEq, 1>(
              o, pa[kk], nmajor(st + Lay::v + (mc0 >> 6) * (kChunk * 128), kk, kChunk * 128), true);
        wgmma_commit();
        // X (group 3) is done: its copy for the next chunk and the λ^L scaling run while P V
        // computes. Two copies: this one is the buffer chunk c - 1 read, freed by the barrier at
        // the top. One copy (split-K): a warpgroup reads only the X rows it writes, and the named
        // barrier holds its warps until all four are past their Q X.
        wgmma_wait<1>();
        fence_regs<kXM * kXF>(x);
        if constexpr (kSplit) scan_mma::named_barrier(1 + wg, 128);
        if (docs) {  // x is the state after chunk c: a document may end here, the next start
          const int end_doc = __ldg(&dc.chunks[first + c].end_doc);
          if (end_doc >= 0 && dc.final.ref.ptr) {
            const StateRef& f = dc.final.ref;
            write_x(StateRef{f.ptr + end_doc * dc.final.doc_stride, f.sbh, 0, f.si, f.sj}, 0);
          }
          if (c + 1 < num_chunks) {
            const int next = __ldg(&dc.chunks[first + c + 1].start_doc);
            if (next >= 0) reset_x(next);
          }
        }
        store_x((c + 1) % Lay::x_bufs);
        fence_proxy_async();
        if (c + 1 < num_chunks) scale_x(pw[chunk_len(c + 1)]);
        wgmma_wait<0>();
        fence_regs<kEq / 2>(o);
      } else {
        wgmma_wait<0>();
        fence_regs<kXM * kXF>(x);
      }
      if constexpr (!kO) continue;

      // The O values this warpgroup stores: o, or under split-K the sums fo (kept out of the
      // accumulators: writing them back made ptxas serialise the warpgroup MMAs).
      float fo[kSplit ? kOq / 2 : 1];
      auto o_out = [&](int i) {
        if constexpr (kSplit) {
          return fo[i];
        } else {
          return o[i];
        }
      };
      if constexpr (kSplit) {
        // Split-K: each warpgroup holds its half of the dk sum for all kEt columns. Hand the
        // other warpgroup the columns it stores (fragments j of the other half) through the
        // exchange, then add the ones this warpgroup stores into fo.
        float4* red = reinterpret_cast<float4*>(smem + Lay::red);
        const int tw = threadIdx.x & 127;
        constexpr int kHalf = kOq / 8;  // 4-float groups per half
#pragma unroll
        for (int j = 0; j < kHalf; ++j) {
          const int a = 4 * j, b = 4 * (j + kHalf);  // fragments of columns [0, 32), [32, 64)
          red[((1 - wg) * kHalf + j) * 128 + tw] =
              wg ? make_float4(o[a], o[a + 1], o[a + 2], o[a + 3])
                 : make_float4(o[b], o[b + 1], o[b + 2], o[b + 3]);
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < kHalf; ++j) {
          const int a = 4 * j, b = 4 * (j + kHalf);
          const float4 r = red[(wg * kHalf + j) * 128 + tw];
          fo[a] = (wg ? o[b] : o[a]) + r.x;
          fo[a + 1] = (wg ? o[b + 1] : o[a + 1]) + r.y;
          fo[a + 2] = (wg ? o[b + 2] : o[a + 2]) + r.z;
          fo[a + 3] = (wg ? o[b + 3] : o[a + 3]) + r.w;
        }
      }

      // Stage this warp's 16 × kOq block of O (only this warp touches it) and store whole vectors.
      T* sO = reinterpret_cast<T*>(smem + Lay::o);
#pragma unroll
      for (int j = 0; j < kOq / 8; j += 2)
        stsm_x4(sO + sm_row * Lay::ldo + oc0 + 8 * j + sm_col,
                pack2<T>(o_out(4 * j), o_out(4 * j + 1)),
                pack2<T>(o_out(4 * j + 2), o_out(4 * j + 3)),
                pack2<T>(o_out(4 * j + 4), o_out(4 * j + 5)),
                pack2<T>(o_out(4 * j + 6), o_out(4 * j + 7)));
      __syncwarp();
      constexpr int kVec = 8, kRowVecs = kOq / kVec;
      if (L == kChunk && ncols == kEt && o_aligned) {
        // Whole chunk, every column, 16-byte aligned rows: no per-vector checks.
#pragma unroll
        for (int idx = lane; idx < 16 * kRowVecs; idx += 32) {
          const int r = row0 + idx / kRowVecs, oc = oc0 + (idx % kRowVecs) * kVec;
          *reinterpret_cast<uint4*>(o_rows + (t0 + r) * p.o_st + col0 + oc) =
              *reinterpret_cast<const uint4*>(sO + r * Lay::ldo + oc);
        }
        continue;
      }
#pragma unroll
      for (int idx = lane; idx < 16 * kRowVecs; idx += 32) {
        const int r = row0 + idx / kRowVecs, oc = oc0 + (idx % kRowVecs) * kVec;
        if (r >= L || oc >= ncols) continue;
        T* dst = o_rows + (t0 + r) * p.o_st + col0 + oc;
        const T* src = sO + r * Lay::ldo + oc;
        if (oc + kVec <= ncols && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
          *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
        } else {
          for (int e = 0; e < kVec && oc + e < ncols; ++e) dst[e] = src[e];
        }
      }
    }
  };

  auto publish_x_copy = [&] {
    if (docs) {  // the segment's first chunk starts a document
      const int d0 = dc.chunks[first].start_doc;
      if (d0 >= 0) reset_x(d0);
    }
    store_x(0);
    fence_proxy_async();
  };
  // The state phase's initial-state term of documents: x += λ^{rows from the document's first
  // row to the segment's end}·init[d] for the last document that starts in the segment.
  auto add_doc_init = [&] {
    if (start_chunk < 0 || !dc.init.ref.ptr) return;
    const DocChunk e = dc.chunks[first + start_chunk];
    const float w = expf(-s_h * static_cast<float>(t_end - e.t0));
    const StateRef& f = dc.init.ref;
    const StateRef r{f.ptr + e.start_doc * dc.init.doc_stride, f.sbh, 0, f.si, f.sj};
#pragma unroll
    for (int m = 0; m < kXM; ++m)
#pragma unroll
      for (int j = 0; j < kXN / 8; ++j)
#pragma unroll
        for (int e2 = 0; e2 < 4; ++e2) x[kXF * m + 4 * j + e2] += w * state_at(r, 0, m, j, e2);
  };
  if constexpr (kMode == Mode::kState) {
    run(std::false_type{}, [] {});
    add_doc_init();
  } else if constexpr (kMode == Mode::kOutput) {
    run(std::true_type{}, publish_x_copy);
  } else {
    // x = A_g. The last segment has no successor, so it skips the state phase: its output phase
    // produces the final state from P_{g-1} itself.
    if (seg + 1 < p.num_segs) {
      run(std::false_type{}, [] {});
      add_doc_init();
    }
    __syncthreads();  // every warpgroup is done with the state phase's stages
    // The chain, while the output phase's first stages load: P_g = λ^{L_g}·P_{g-1} + A_g into
    // ring slot g % 2 (fragment order: float4 j of thread t at 4(j·kThreads + t)); x = P_{g-1}.
    auto chain = [&] {
      const int64_t lane_id = bh * num_slices + slice;
      constexpr int kF4 = kXM * kXN / 8;      // float4 per thread
      constexpr int kSlot4 = kThreads * kF4;  // float4 per state
      float4* ring = reinterpret_cast<float4*>(p.chain.ring) + lane_id * 2 * kSlot4;
      int* flag = p.chain.counter + 1 + lane_id;  // segments of this lane published
      if (seg > 0) {
        if (threadIdx.x == 0)
          while (load_acquire(flag) < seg) __nanosleep(64);
        __syncthreads();
      }
      const float a =
          docs && dc.segs[seg].reset ? 0.0f : expf(-s_h * static_cast<float>(t_end - t_begin));
      const bool publish = seg + 1 < p.num_segs;
      const float4* prev = ring + ((seg + 1) & 1) * kSlot4 + threadIdx.x;
      float4* mine = ring + (seg & 1) * kSlot4 + threadIdx.x;
#pragma unroll
      for (int f = 0; f < kF4; ++f) {
        const int m = f / (kXN / 8), j = f % (kXN / 8);
        float* xf = x + 4 * f;  // = x + kXF·m + 4j
        float4 in;
        if (seg > 0) {
          in = __ldcg(prev + f * kThreads);
        } else {
          in = make_float4(state_at(p.state_in, 0, m, j, 0), state_at(p.state_in, 0, m, j, 1),
                           state_at(p.state_in, 0, m, j, 2), state_at(p.state_in, 0, m, j, 3));
        }
        if (publish)
          __stcg(mine + f * kThreads, make_float4(a * in.x + xf[0], a * in.y + xf[1],
                                                  a * in.z + xf[2], a * in.w + xf[3]));
        xf[0] = in.x;
        xf[1] = in.y;
        xf[2] = in.z;
        xf[3] = in.w;
      }
      if (publish) {
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) store_release(flag, seg + 1);
      }
      publish_x_copy();
    };
    run(std::true_type{}, chain);
  }

  // The state after the segment: every segment's (state pass, output pass asked for it); the
  // fused scan's last segment only (state_out is the user's final state).
  if (p.state_out.ptr && (!kFused || seg + 1 == p.num_segs)) write_x(p.state_out, kFused ? 0 : seg);
#else
  __trap();  // launched only on sm_90a builds and devices (sm90a_device())
#endif
}

}  // namespace lightring::kernels::cuda::scan_wgmma
