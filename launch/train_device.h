// Where lightring-train computes (--device, docs/training.md "GPU"): the CPU, or one GPU per
// rank. On a GPU the model, its fp32 master weights, the AdamW state, the batch and the
// attention all live on cuda:<local rank>, where the local rank is the rank's index among the
// ranks of its host (MPI_COMM_TYPE_SHARED); kernels run on torch's current CUDA stream.
//
// Precision (--precision bf16) is torch autocast on the device of the run: inside the forward
// scope the linear layers and the lightring attention run in bf16 (autocast casts each fp32
// weight per use), SRMSNorm computes in fp32 (it casts), and backward runs outside the scope,
// so every weight's gradient arrives in fp32, as the weight.
//
// CUDA code is compiled only when this build links a CUDA libtorch and the CUDA backend
// (LIGHTRING_TORCH_CUDA); a CPU-only build still accepts --device cpu and auto, and refuses
// --device cuda with the reason.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace lightring::launch {

struct TrainDevice {
  torch::Device device{torch::kCPU};
  int local_rank = 0;  // this rank's index among the ranks of its host
  int num_gpus = 0;    // GPUs visible to this rank (0 on a CPU run of a CPU build)
  bool is_cuda() const { return device.is_cuda(); }
  // "cpu", or "cuda:1 (NVIDIA H200, 139.8 GiB)".
  std::string describe() const;
};

// Whether this lightring-train can run on GPUs (CUDA backend and a CUDA libtorch).
bool built_with_cuda();

// Resolves --device (cpu | cuda | auto) for this rank of `world`. Collective (the local rank
// comes from a split of `world` by host). Throws lightring::Error naming --device when cuda is
// asked of a build without CUDA, of a host without a visible GPU, or when the host runs more
// ranks than it has GPUs. Every rank must pass the same option; the caller agrees on errors.
TrainDevice resolve_device(const std::string& option, comm::MpiCommunicator& world);

// bf16 autocast on the device of the run for the scope of one forward (see the header note);
// does nothing when `on` is false.
class Autocast {
 public:
  Autocast(bool on, const TrainDevice& device);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool on_;
  bool cuda_;
};

// Waits for the work queued on the device (a no-op on the CPU): step times measure the GPU.
void synchronize(const TrainDevice& device);

// Peak memory in MB since the last reset_peak_memory: on a GPU the caching allocator's peak of
// allocated bytes (tensors, not the cached reserve); on the CPU the peak resident set of the
// process (getrusage; it cannot be reset).
double peak_memory_mb(const TrainDevice& device);
void reset_peak_memory(const TrainDevice& device);
// "cuda-peak" or "max-rss": what peak_memory_mb measures, for the log.
const char* peak_memory_kind(const TrainDevice& device);

// The SP group the attention exchanges its states over: on the CPU `mpi_sp` itself; on a GPU
// with SP > 1 an NCCL communicator of the same ranks (comm::nccl_from_mpi; NCCL's buffers are
// device memory) owned by `owner`. Collective over mpi_sp. Throws when a GPU run with SP > 1
// has no NCCL in this build.
comm::Communicator* attention_group(comm::Communicator& mpi_sp, const TrainDevice& device,
                                    double timeout_s, std::unique_ptr<comm::Communicator>* owner);

}  // namespace lightring::launch
