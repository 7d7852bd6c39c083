// The gradient all-reduce of lightring-train on GPUs: NCCL, bucketed and started while backward
// still runs (the GPU counterpart of launch/train_reduce.h, same bucket layout and contract).
//
// Buckets: the parameters in reverse registration order (the order backward produces their
// gradients), cut into flat fp32 device buffers of about bucket_bytes. A hook on each parameter
// copies its gradient into its bucket on torch's current stream (for CUDA tensors hooks run on
// autograd's device thread, which makes no MPI call); when a bucket is complete an
// event recorded on that stream makes the reducer's own stream wait, and ncclAllReduce (sum over
// the world) is enqueued there: the reduction of the LM head's bucket overlaps the backward of
// the layers below it. finish() makes the compute stream wait for the reducer's stream (an
// event, no host synchronisation), writes the sums into .grad, and bounds the wait by the
// deadline: it polls the last event and NCCL's async error, and on timeout aborts the NCCL
// communicator (which releases a kernel waiting for a dead peer) and throws CommError.
//
// Ownership: the reducer owns its NCCL communicator (created collectively over `world` from a
// unique id that rank 0 sends over MPI; non-blocking init bounded by the deadline), its stream
// and its events; it is not copyable. Each parameter must get exactly one gradient per backward.
// Compiled only with a CUDA libtorch and NCCL (LIGHTRING_TRAIN_NCCL).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "comm/mpi_communicator.h"

struct ncclComm;
struct CUstream_st;
struct CUevent_st;

namespace lightring::launch {

class NcclGradientReducer {
 public:
  // Collective over `world`. params: fp32 CUDA tensors on `device` (outliving the reducer).
  NcclGradientReducer(comm::MpiCommunicator& world, std::vector<torch::Tensor> params,
                      double bucket_bytes, int device);
  ~NcclGradientReducer();
  NcclGradientReducer(const NcclGradientReducer&) = delete;
  NcclGradientReducer& operator=(const NcclGradientReducer&) = delete;

  void begin();   // before backward: clears the buckets
  void finish();  // after backward: .grad of every parameter = the sum over the world
  int num_buckets() const { return static_cast<int>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // element offset of each parameter in flat
    torch::Tensor flat;            // fp32, on the device
    size_t ready = 0;
    bool posted = false;
  };
  void on_grad(size_t param, const torch::Tensor& grad);
  void post(Bucket& b);
  // Non-blocking NCCL: until the last call has completed, bounded by the deadline; peer failure
  // notices (MPI) are polled only on the main thread (poll_peers).
  void wait_ready(const char* what, bool poll_peers);
  [[noreturn]] void fail(const char* what);

  comm::MpiCommunicator& world_;
  std::vector<torch::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_, slot_of_;
  std::vector<uint8_t> seen_;
  bool active_ = false;
  int device_ = 0;
  ncclComm* comm_ = nullptr;
  CUstream_st* stream_ = nullptr;  // the reducer's own stream
  CUevent_st* ready_ = nullptr;    // recorded on the compute stream before each post
  CUevent_st* done_ = nullptr;     // recorded on stream_ after the last post
};

}  // namespace lightring::launch
