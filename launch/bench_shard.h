// The tensors of one rank's shard for lightring-bench, on the host or a GPU.
//
// Element tensors (dtype): q, k [B,H,n,D]; v, o, d_o [B,H,n,E]; dq, dk, dv.
// fp32: decay [H], s0 / g / s_in / final_state / ds0 [B,H,D,E].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention.h"

namespace lightring::launch {

using kernels::Device;
using kernels::DType;

// An owned byte buffer in host or device memory (zero-initialised).
class Buffer {
 public:
  Buffer() = default;
  Buffer(Device device, size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;

  void* data() { return ptr_; }
  float* f32() { return static_cast<float*>(ptr_); }
  size_t bytes() const { return bytes_; }
  void upload(const void* host, size_t bytes);
  std::vector<uint8_t> download() const;

 private:
  Device device_ = Device::kCpu;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

struct ShardShape {
  int64_t batch, heads, seqlen, qk_dim, v_dim;
  DType dtype;
};

struct Shard {
  ShardShape s;
  Device device;
  Buffer q, k, v, d_o, o, dq, dk, dv;
  Buffer decay, s0, g, s_in, final_state, ds0;
  bool use_decay = true, use_s0 = false, use_g = false;

  Shard(Device device, const ShardShape& shape);
  kernels::ForwardParams forward_params(void* stream);
  kernels::BackwardParams backward_params(void* stream);
  size_t state_bytes() const;
};

// Waits for all work of the device (no-op on the CPU).
void device_synchronize(Device device);
// Bytes of memory in use by this process: CPU peak resident set (VmHWM);
// CUDA: device memory in use (total - free) of the current device.
double memory_in_use_bytes(Device device);
// A readable name of the device ("NVIDIA H200", the CPU model name).
std::string device_description(Device device);

// Random normal values rounded to dtype, as raw dtype bytes.
std::vector<uint8_t> random_bytes(size_t numel, DType dtype, uint64_t seed);
// Raw dtype bytes <-> fp32.
std::vector<float> bytes_to_float(const std::vector<uint8_t>& bytes, DType dtype);
std::vector<uint8_t> float_to_bytes(const std::vector<float>& x, DType dtype);

}  // namespace lightring::launch
