// Device fill of lightring-bench inputs (launch/bench_fill.h): the same bits
// as bench_bytes() on the host, without a host copy of the shard.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/error.h"
#include "launch/bench_fill.h"

namespace lightring::launch {

namespace {

template <typename T>
__device__ T from_f32(float x);
template <>
__device__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __half from_f32<__half>(float x) {
  return __float2half_rn(x);
}

template <typename T>
__global__ void fill_kernel(T* __restrict__ dst, size_t numel, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = from_f32<T>(test::uniform_value(seed, i));
}

template <typename T>
void launch(void* dst, size_t numel, uint64_t seed, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const size_t blocks = (numel + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
  fill_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<T*>(dst), numel, seed);
}

}  // namespace

void fill_device(void* dst, size_t numel, DType dtype, uint64_t seed, void* stream) {
  if (numel == 0) return;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32:
      launch<float>(dst, numel, seed, s);
      break;
    case DType::kBFloat16:
      launch<__nv_bfloat16>(dst, numel, seed, s);
      break;
    case DType::kFloat16:
      launch<__half>(dst, numel, seed, s);
      break;
  }
  const cudaError_t e = cudaGetLastError();
  LR_CHECK(e == cudaSuccess, "fill_device: kernel launch failed: ", cudaGetErrorString(e));
}

}  // namespace lightring::launch
