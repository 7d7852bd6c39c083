// The gradient all-reduce of lightring-train, bucketed and started while backward still runs.
//
// The parameters are cut into buckets of about bucket_bytes, in reverse registration order
// (the order backward produces their gradients: LM head first, embedding last). A hook on every
// parameter copies its gradient into its bucket's flat buffer as soon as autograd computes it;
// when a bucket is complete, its MPI_Iallreduce (sum over the world) is posted, and every later
// hook tests the posted requests so that MPI progresses them while backward goes on. finish()
// waits for every bucket (bounded by the communicator's deadline, like every wait in comm/) and
// writes the sums into the parameters' .grad. Each parameter must get exactly one gradient per
// backward (true of TransNormerLM: every weight is used once per forward).
//
// The bucket layout is fixed at construction, so each element is always summed by the same
// MPI call of the same size: runs with the same world size reduce bit-identically.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "comm/mpi_communicator.h"

namespace lightring::launch {

class GradientReducer {
 public:
  // Registers the hooks on `params` (which must outlive the reducer). bucket_bytes <= 0: one
  // bucket, posted when the last gradient arrives.
  GradientReducer(comm::MpiCommunicator& world, std::vector<torch::Tensor> params,
                  double bucket_bytes);
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before backward: clears the buckets (hooks outside begin()/finish() do nothing).
  void begin();
  // After backward: waits for every bucket and sets each parameter's .grad to the world sum.
  // Throws lightring::Error if a parameter got no gradient, CommError when a peer fails.
  void finish();
  int num_buckets() const { return static_cast<int>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<int64_t> offsets;
    torch::Tensor flat;  // fp32
    size_t ready = 0;
    bool posted = false;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  void on_grad(size_t param, const torch::Tensor& grad);
  void post(Bucket& b);
  void progress();

  comm::MpiCommunicator& world_;
  std::vector<torch::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_, slot_of_;
  std::vector<uint8_t> seen_;
  bool active_ = false;
};

}  // namespace lightring::launch
