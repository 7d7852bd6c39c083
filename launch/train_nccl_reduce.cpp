// The NCCL gradient all-reduce of launch/train_nccl_reduce.h.
#include "launch/train_nccl_reduce.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "comm/communicator.h"
#include "core/error.h"

namespace lightring::launch {

namespace {

using Clock = std::chrono::steady_clock;

void check_cuda(cudaError_t e, const char* what) {
  LR_CHECK(e == cudaSuccess, "gradient all-reduce: ", what, ": ", cudaGetErrorString(e));
}

cudaStream_t current_stream(int device) {
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
}

}  // namespace

NcclGradientReducer::NcclGradientReducer(comm::MpiCommunicator& world,
                                         std::vector<torch::Tensor> params, double bucket_bytes,
                                         int device)
    : world_(world), params_(std::move(params)), device_(device) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  bucket_of_.resize(params_.size());
  slot_of_.resize(params_.size());
  seen_.assign(params_.size(), 0);
  double bytes = 0;
  for (size_t i = params_.size(); i-- > 0;) {
    const torch::Tensor& p = params_[i];
    LR_CHECK(p.scalar_type() == torch::kFloat && p.is_cuda(),
             "NcclGradientReducer: fp32 CUDA parameters only");
    if (buckets_.empty() || (bucket_bytes > 0 && bytes >= bucket_bytes)) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    bucket_of_[i] = buckets_.size() - 1;
    slot_of_[i] = b.params.size();
    b.offsets.push_back(b.params.empty() ? 0 : b.offsets.back() + params_[b.params.back()].numel());
    b.params.push_back(i);
    bytes += static_cast<double>(p.numel()) * 4;
  }
  for (Bucket& b : buckets_) {
    b.flat = torch::zeros({b.offsets.back() + params_[b.params.back()].numel()},
                          torch::TensorOptions().dtype(torch::kFloat).device(params_[0].device()));
  }

  // The unique id of rank 0 reaches every rank through a bounded MPI all-gather (16 int64).
  constexpr size_t kIdWords = NCCL_UNIQUE_ID_BYTES / sizeof(int64_t);
  static_assert(NCCL_UNIQUE_ID_BYTES % sizeof(int64_t) == 0, "ncclUniqueId size");
  ncclUniqueId id{};
  if (world_.rank() == 0) {
    LR_CHECK(ncclGetUniqueId(&id) == ncclSuccess, "gradient all-reduce: ncclGetUniqueId failed");
  }
  std::vector<int64_t> mine(kIdWords), all(kIdWords * world_.size());
  std::memcpy(mine.data(), &id, NCCL_UNIQUE_ID_BYTES);
  world_.all_gather_host(mine.data(), all.data(), kIdWords);
  std::memcpy(&id, all.data(), NCCL_UNIQUE_ID_BYTES);  // rank 0's

  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
  check_cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; wait_ready polls against the deadline
  const ncclResult_t r = ncclCommInitRankConfig(&comm_, world_.size(), id, world_.rank(), &config);
  LR_CHECK(r == ncclSuccess || r == ncclInProgress,
           "gradient all-reduce: ncclCommInitRankConfig: ", ncclGetErrorString(r));
  wait_ready("creating the NCCL communicator", /*poll_peers=*/true);

  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].register_hook([this, i](const torch::Tensor& grad) { on_grad(i, grad); });
  }
}

NcclGradientReducer::~NcclGradientReducer() {
  if (comm_ != nullptr) ncclCommAbort(comm_);  // nothing is in flight after finish()
  if (done_ != nullptr) cudaEventDestroy(done_);
  if (ready_ != nullptr) cudaEventDestroy(ready_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void NcclGradientReducer::fail(const char* what) {
  if (comm_ != nullptr) ncclCommAbort(comm_);
  comm_ = nullptr;
  world_.abort();
  LR_THROW_COMM("gradient all-reduce over ", world_.size(), " GPUs (NCCL): ", what,
                ": no answer within ", world_.timeout_s(),
                " s (--timeout); a rank is stopped, dead or far behind");
}

void NcclGradientReducer::wait_ready(const char* what, bool poll_peers) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(world_.timeout_s());
  for (int polls = 0;; ++polls) {
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    if (state == ncclSuccess) return;
    LR_CHECK(state == ncclInProgress, "gradient all-reduce: ", what, ": NCCL error ",
             ncclGetErrorString(state));
    if (poll_peers) comm::check_peer_failures();
    if (Clock::now() > deadline) fail(what);
    if (polls > 100) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void NcclGradientReducer::begin() {
  for (Bucket& b : buckets_) {
    LR_CHECK(!b.posted, "NcclGradientReducer::begin while a reduction is in flight");
    b.ready = 0;
  }
  seen_.assign(params_.size(), 0);
  active_ = true;
}

void NcclGradientReducer::on_grad(size_t i, const torch::Tensor& grad) {
  if (!active_) return;
  LR_CHECK(!seen_[i], "NcclGradientReducer: parameter ", i, " got two gradients in one backward");
  seen_[i] = 1;
  Bucket& b = buckets_[bucket_of_[i]];
  b.flat.narrow(0, b.offsets[slot_of_[i]], params_[i].numel()).copy_(grad.reshape({-1}));
  if (++b.ready == b.params.size()) post(b);
}

// The bucket's copies were enqueued on the compute stream: the own stream waits for them, then
// reduces in place.
void NcclGradientReducer::post(Bucket& b) {
  LR_CHECK(comm_ != nullptr, "gradient all-reduce on an aborted communicator");
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  check_cuda(cudaEventRecord(ready_, current_stream(device_)), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
  const ncclResult_t r =
      ncclAllReduce(b.flat.data_ptr<float>(), b.flat.data_ptr<float>(),
                    static_cast<size_t>(b.flat.numel()), ncclFloat, ncclSum, comm_, stream_);
  LR_CHECK(r == ncclSuccess || r == ncclInProgress,
           "gradient all-reduce: ncclAllReduce: ", ncclGetErrorString(r));
  // On autograd's device thread: no MPI here (MPI_THREAD_FUNNELED), the deadline alone.
  wait_ready("enqueueing a bucket", /*poll_peers=*/false);
  b.posted = true;
}

void NcclGradientReducer::finish() {
  active_ = false;
  for (size_t i = 0; i < params_.size(); ++i)
    LR_CHECK(seen_[i], "NcclGradientReducer: parameter ", i, " got no gradient in this backward");
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
  check_cuda(cudaEventRecord(done_, stream_), "cudaEventRecord");
  // Bounded wait: the host polls the last reduction; a peer that never joins trips the deadline.
  const auto deadline = Clock::now() + std::chrono::duration<double>(world_.timeout_s());
  for (int polls = 0;; ++polls) {
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaSuccess) break;
    LR_CHECK(e == cudaErrorNotReady, "gradient all-reduce: ", cudaGetErrorString(e));
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    LR_CHECK(state == ncclSuccess || state == ncclInProgress, "gradient all-reduce: NCCL error ",
             ncclGetErrorString(state));
    comm::check_peer_failures();
    if (Clock::now() > deadline) fail("waiting for the buckets");
    if (polls > 100) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  check_cuda(cudaStreamWaitEvent(current_stream(device_), done_, 0), "cudaStreamWaitEvent");
  for (Bucket& b : buckets_) {
    b.posted = false;
    for (size_t s = 0; s < b.params.size(); ++s) {
      torch::Tensor& p = params_[b.params[s]];
      const torch::Tensor sum = b.flat.narrow(0, b.offsets[s], p.numel()).view_as(p);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
      } else {
        p.mutable_grad() = sum.clone();
      }
    }
  }
}

}  // namespace lightring::launch
