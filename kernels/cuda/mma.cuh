// Warp-level tensor-core fragments for the scan kernel: one 16×16 (k = 16)
// step of D(16×8) += A(16×16)·B(16×8), with operands read from shared memory.
//
// Element types and the instruction each uses:
//   bf16 / fp16: mma.sync.m16n8k16 (fp32 accumulate), operands via ldmatrix;
//   fp32:        two mma.sync.m16n8k8 tf32 steps, operands via scalar loads
//                rounded to tf32 (cvt.rna), so fp32 inputs keep ~1e-4 accuracy.
//
// Storage conventions (row-major tiles in shared memory, leading dim `ld` in
// elements, every ld a multiple of 8 bytes and rows 16-byte aligned):
//   load_a<T, false>: A[m][k] stored as s[m][k];   load_a<T, true>: stored as s[k][m] (A = Xᵀ)
//   load_b<T, false>: B[k][n] stored as s[n][k];   load_b<T, true>: stored as s[k][n]
// load_b fills two n8 tiles (n0 and n0 + 8): b[0 .. kB) and b[kB .. 2kB).
// Accumulator layout (PTX m16n8): c[0], c[1] at (row g, cols 2t, 2t+1) and
// c[2], c[3] at (row g + 8, cols 2t, 2t+1), with g = lane / 4 and t = lane % 4.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace lightring::kernels::cuda {

template <typename T>
struct FragSize {               // 16-bit operands
  static constexpr int kA = 4;  // registers of A per k16 step
  static constexpr int kB = 2;  // registers of B per k16 step and n8 tile
};
template <>
struct FragSize<float> {  // tf32: two k8 steps
  static constexpr int kA = 8;
  static constexpr int kB = 4;
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

// ---- A operand -----------------------------------------------------------------

template <typename T, bool kTrans>
__device__ __forceinline__ void load_a(uint32_t* a, const T* s, int ld, int m0, int k0) {
  const int lane = threadIdx.x & 31;
  if constexpr (sizeof(T) == 2) {
    if constexpr (!kTrans) {
      ldsm_x4(a, s + (m0 + (lane & 15)) * ld + k0 + (lane >> 4) * 8);
    } else {
      const int mi = lane >> 3;
      ldsm_x4_trans(a, s + (k0 + (mi >> 1) * 8 + (lane & 7)) * ld + m0 + (mi & 1) * 8);
    }
  } else {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      const int k = k0 + ks * 8 + t;
      if constexpr (!kTrans) {
        a[ks * 4 + 0] = to_tf32(s[(m0 + g) * ld + k]);
        a[ks * 4 + 1] = to_tf32(s[(m0 + g + 8) * ld + k]);
        a[ks * 4 + 2] = to_tf32(s[(m0 + g) * ld + k + 4]);
        a[ks * 4 + 3] = to_tf32(s[(m0 + g + 8) * ld + k + 4]);
      } else {
        a[ks * 4 + 0] = to_tf32(s[k * ld + m0 + g]);
        a[ks * 4 + 1] = to_tf32(s[k * ld + m0 + g + 8]);
        a[ks * 4 + 2] = to_tf32(s[(k + 4) * ld + m0 + g]);
        a[ks * 4 + 3] = to_tf32(s[(k + 4) * ld + m0 + g + 8]);
      }
    }
  }
}

// ---- B operand, two n8 tiles ---------------------------------------------------

template <typename T, bool kTrans>
__device__ __forceinline__ void load_b(uint32_t* b, const T* s, int ld, int k0, int n0) {
  const int lane = threadIdx.x & 31;
  if constexpr (sizeof(T) == 2) {
    const int mi = lane >> 3;
    if constexpr (!kTrans) {
      ldsm_x4(b, s + (n0 + (mi >> 1) * 8 + (lane & 7)) * ld + k0 + (mi & 1) * 8);
    } else {
      ldsm_x4_trans(b, s + (k0 + (mi & 1) * 8 + (lane & 7)) * ld + n0 + (mi >> 1) * 8);
    }
  } else {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const int n = n0 + nt * 8 + g;
#pragma unroll
      for (int ks = 0; ks < 2; ++ks) {
        const int k = k0 + ks * 8 + t;
        if constexpr (!kTrans) {
          b[nt * 4 + ks * 2 + 0] = to_tf32(s[n * ld + k]);
          b[nt * 4 + ks * 2 + 1] = to_tf32(s[n * ld + k + 4]);
        } else {
          b[nt * 4 + ks * 2 + 0] = to_tf32(s[k * ld + n]);
          b[nt * 4 + ks * 2 + 1] = to_tf32(s[(k + 4) * ld + n]);
        }
      }
    }
  }
}

// ---- c(16×8) += a(16×16) · b(16×8) -----------------------------------------------

template <typename T>
__device__ __forceinline__ void mma(float* c, const uint32_t* a, const uint32_t* b);

template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void mma<__half>(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void mma<float>(float* c, const uint32_t* a, const uint32_t* b) {
#pragma unroll
  for (int ks = 0; ks < 2; ++ks) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[ks * 4 + 0]), "r"(a[ks * 4 + 1]), "r"(a[ks * 4 + 2]), "r"(a[ks * 4 + 3]),
          "r"(b[ks * 2 + 0]), "r"(b[ks * 2 + 1]));
  }
}

// ---- one k16 step of a 16 × 16·kPairs block ---------------------------------------

// acc[2j], acc[2j + 1] += a · B[k0, k0 + 16)[n0 + 16j, n0 + 16j + 16) for j < kPairs, with B
// read from s by load_b<T, kTransB> (the same order of loads and mmas as writing it out).
template <typename T, bool kTransB, int kPairs>
__device__ __forceinline__ void mma_pairs(float (*acc)[4], const uint32_t* a, const T* s, int ld,
                                          int k0, int n0) {
  constexpr int kB = FragSize<T>::kB;
#pragma unroll
  for (int j = 0; j < kPairs; ++j) {
    uint32_t b[2 * kB];
    load_b<T, kTransB>(b, s, ld, k0, n0 + 16 * j);
    mma<T>(acc[2 * j], a, b);
    mma<T>(acc[2 * j + 1], a, b + kB);
  }
}

// ---- element conversions -----------------------------------------------------

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_f32(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ float from_f32(float x) {
  return x;
}

__device__ __forceinline__ float to_f32(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_f32(__half x) {
  return __half2float(x);
}
__device__ __forceinline__ float to_f32(float x) {
  return x;
}

// s[0] = x, s[1] = y (s 4- or 8-byte aligned).
template <typename T>
__device__ __forceinline__ void store_pair(T* s, float x, float y) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    *reinterpret_cast<__nv_bfloat162*>(s) = __floats2bfloat162_rn(x, y);
  } else if constexpr (std::is_same_v<T, __half>) {
    *reinterpret_cast<__half2*>(s) = __floats2half2_rn(x, y);
  } else {
    *reinterpret_cast<float2*>(s) = make_float2(x, y);
  }
}

}  // namespace lightring::kernels::cuda
