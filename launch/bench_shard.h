// The tensors of one rank's shard for lightring-bench, on the host or a GPU.
//
// Element tensors (dtype): q, k [B,H,n,D]; v, o, d_o [B,H,n,E]; dq, dk, dv.
// fp32: decay [H], s0 / g / s_in / final_state / ds0 [B,H,D,E].
// With --docs (launch/bench_docs.h, B = 1): the shard's document pieces, and with --states the
// per-document states of its K pieces, [K,H,D,E] fp32: doc_s0 / doc_g in, doc_final / d_doc_s0 out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/documents.h"

namespace lightring::launch {

using kernels::Device;
using kernels::DType;

// An owned byte buffer in host or device memory (zero-initialised). Every
// Buffer is counted (tracked_bytes); a failed allocation, or one beyond the
// limit set by set_allocation_limit(), throws lightring::Error with "out of
// memory" in its message (the CUDA error is cleared: the device stays usable).
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
  kernels::LocalDocuments docs;  // valid when use_docs
  Buffer doc_s0, doc_g, doc_final, d_doc_s0;
  bool use_docs = false, use_doc_states = false;

  Shard(Device device, const ShardShape& shape);
  kernels::ForwardParams forward_params(void* stream);
  kernels::BackwardParams backward_params(void* stream);
  size_t state_bytes() const;
};

// Fills the first `count` fp32 values of `b` with the bench values of `seed`.
void fill_f32(Buffer& b, size_t count, uint64_t seed);

// Bytes held by live Buffers now, and their high-water mark since the last reset.
size_t tracked_bytes();
size_t tracked_peak_bytes();
void reset_tracked_peak();
// A fake allocation limit (bytes held by Buffers) for tests of out-of-memory
// paths on the CPU; 0 = none. lightring-bench sets it from the environment
// variable LIGHTRING_BENCH_MEM_LIMIT = BYTES or BYTES@RANK (only that world rank).
void set_allocation_limit(size_t bytes);

// Waits for all work of the device (no-op on the CPU).
void device_synchronize(Device device);
// A readable name of the device ("NVIDIA H200", the CPU model name).
std::string device_description(Device device);

// Raw dtype bytes <-> fp32.
std::vector<float> bytes_to_float(const std::vector<uint8_t>& bytes, DType dtype);
std::vector<uint8_t> float_to_bytes(const std::vector<float>& x, DType dtype);

}  // namespace lightring::launch
