// The device of lightring-train (launch/train_device.h).
#include "launch/train_device.h"

#include <ATen/autocast_mode.h>
#include <mpi.h>
#include <torch/version.h>

#include <cstdlib>
#include <sstream>

#include "core/error.h"
#include "launch/train_log.h"

#ifdef LIGHTRING_WITH_NCCL
#include "comm/nccl_communicator.h"
#endif
#ifdef LIGHTRING_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#include <torch/cuda.h>
#endif

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define LIGHTRING_AUTOCAST_BY_DEVICE 1  // set_autocast_enabled(device_type, on), torch >= 2.4
#endif

namespace lightring::launch {

namespace {

// This rank's index among the ranks of its host: a split of the world by shared memory.
int local_rank_of(comm::MpiCommunicator& world) {
  MPI_Comm local = MPI_COMM_NULL;
  LR_CHECK(MPI_Comm_split_type(world.handle(), MPI_COMM_TYPE_SHARED, world.rank(), MPI_INFO_NULL,
                               &local) == MPI_SUCCESS,
           "--device: MPI_Comm_split_type failed (finding the ranks of this host)");
  int rank = 0;
  MPI_Comm_rank(local, &rank);
  MPI_Comm_free(&local);
  return rank;
}

std::string visible_devices() {
  const char* env = std::getenv("CUDA_VISIBLE_DEVICES");
  return env == nullptr ? std::string("unset") : "'" + std::string(env) + "'";
}

}  // namespace

bool built_with_cuda() {
#ifdef LIGHTRING_TORCH_CUDA
  return true;
#else
  return false;
#endif
}

std::string TrainDevice::describe() const {
  if (!is_cuda()) return "cpu";
  std::ostringstream os;
  os << "cuda:" << static_cast<int>(device.index());
#ifdef LIGHTRING_TORCH_CUDA
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device.index()) == cudaSuccess)
    os << " (" << prop.name << ", " << format_count(double(prop.totalGlobalMem) / (1 << 30))
       << " GiB)";
#endif
  return os.str();
}

TrainDevice resolve_device(const std::string& option, comm::MpiCommunicator& world) {
  LR_CHECK(option == "cpu" || option == "cuda" || option == "auto",
           "--device must be cpu, cuda or auto (got '", option, "')");
  TrainDevice d;
  d.local_rank = local_rank_of(world);
  if (option == "cpu") return d;
#ifdef LIGHTRING_TORCH_CUDA
  d.num_gpus = static_cast<int>(torch::cuda::device_count());
#endif
  if (option == "auto" && d.num_gpus == 0) return d;
  LR_CHECK(built_with_cuda(),
           "--device cuda: this lightring-train was built without CUDA (it needs the CUDA "
           "backend and a CUDA build of libtorch; configure with the pip torch's "
           "torch.utils.cmake_prefix_path and nvcc, docs/gpu-build.md), use --device cpu");
  LR_CHECK(d.num_gpus > 0, "--device cuda: no GPU is visible to rank ", world.rank(),
           " (CUDA_VISIBLE_DEVICES=", visible_devices(), ")");
  LR_CHECK(d.local_rank < d.num_gpus, "--device ", option, ": rank ", world.rank(), " is rank ",
           d.local_rank, " of its host, which has only ", d.num_gpus,
           " visible GPU(s): start one rank per GPU (mpirun -np <GPUs per host x hosts>)");
  d.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d.local_rank));
#ifdef LIGHTRING_TORCH_CUDA
  c10::cuda::set_device(d.device.index());
#endif
  return d;
}

Autocast::Autocast(bool on, const TrainDevice& device) : on_(on), cuda_(device.is_cuda()) {
  if (!on_) return;
#ifdef LIGHTRING_AUTOCAST_BY_DEVICE
  const at::DeviceType type = cuda_ ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(type, at::kBFloat16);
  at::autocast::set_autocast_enabled(type, true);
#else
  if (cuda_) {
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
#endif
}

Autocast::~Autocast() {
  if (!on_) return;
#ifdef LIGHTRING_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_enabled(cuda_ ? at::kCUDA : at::kCPU, false);
#else
  if (cuda_) {
    at::autocast::set_enabled(false);
  } else {
    at::autocast::set_cpu_enabled(false);
  }
#endif
  at::autocast::clear_cache();
}

void synchronize(const TrainDevice& device) {
#ifdef LIGHTRING_TORCH_CUDA
  if (device.is_cuda()) torch::cuda::synchronize(device.device.index());
#endif
}

double peak_memory_mb(const TrainDevice& device) {
#ifdef LIGHTRING_TORCH_CUDA
  if (device.is_cuda()) {
    // Index 0 of every stat array is the aggregate over the small and large pools.
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.device.index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / 1e6;
  }
#endif
  return max_rss_mb();
}

void reset_peak_memory(const TrainDevice& device) {
#ifdef LIGHTRING_TORCH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.device.index());
#endif
}

const char* peak_memory_kind(const TrainDevice& device) {
  return device.is_cuda() ? "cuda-peak" : "max-rss";
}

comm::Communicator* attention_group(comm::Communicator& mpi_sp, const TrainDevice& device,
                                    double timeout_s, std::unique_ptr<comm::Communicator>* owner) {
  if (!device.is_cuda() || mpi_sp.size() == 1) return &mpi_sp;
#if defined(LIGHTRING_WITH_NCCL)
  auto* mpi = dynamic_cast<comm::MpiCommunicator*>(&mpi_sp);
  LR_CHECK(mpi != nullptr, "attention_group: the SP group must be an MPI communicator");
  *owner = comm::nccl_from_mpi(*mpi, device.device.index(), comm::CommOptions{timeout_s});
  return owner->get();
#else
  LR_THROW("--device cuda with --sp ", mpi_sp.size(),
           ": this build has no NCCL, which the state exchange between GPUs needs");
#endif
}

}  // namespace lightring::launch
