// NcclCommunicator: non-blocking NCCL with deadlines (see nccl_communicator.h).
#include "comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "comm/ipc_transport.h"
#include "core/cuda_check.h"
#include "core/error.h"

// Feature macros, derived once.
#define LIGHTRING_NCCL_HAS_SPLIT (NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0))

namespace lightring::comm {

static_assert(sizeof(ncclUniqueId) == std::tuple_size<NcclUniqueId>::value,
              "NcclUniqueId must hold exactly NCCL_UNIQUE_ID_BYTES");

namespace {

using Clock = std::chrono::steady_clock;

// An on/off switch read from the environment: unset, empty or "1" is on, "0" off;
// anything else throws, naming the variable.
bool env_switch(const char* name) {
  const char* env = std::getenv(name);
  if (!env || !*env || std::strcmp(env, "1") == 0) return true;
  LR_CHECK(std::strcmp(env, "0") == 0, name, " must be unset, '0' or '1' (got '", env, "')");
  return false;
}

// ncclInProgress is expected from a non-blocking communicator; anything else is an error.
#define LR_NCCL_ENQUEUE(call)                                                              \
  do {                                                                                     \
    const ncclResult_t lr_r = (call);                                                      \
    LR_CHECK(lr_r == ncclSuccess || lr_r == ncclInProgress, #call,                         \
             " failed: ", ncclGetErrorString(lr_r), " (", ncclGetLastError(nullptr), ")"); \
  } while (0)

// Non-blocking (deadlines, see the header); max_ctas > 0 caps NCCL's channels
// (resolve_nccl_max_ctas()), 0 leaves NCCL's default.
ncclConfig_t make_config(int max_ctas) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  if (max_ctas > 0) {
    config.minCTAs = 1;
    config.maxCTAs = max_ctas;
  }
  return config;
}

cudaStream_t cs(void* s) {
  return static_cast<cudaStream_t>(s);
}

std::string peers_str(const std::vector<int>& peers) {
  if (peers.empty()) return "its peers";
  std::ostringstream os;
  os << (peers.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < peers.size(); ++i) os << (i ? ", " : "") << peers[i];
  return os.str();
}

}  // namespace

NcclUniqueId nccl_unique_id() {
  ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  LR_CHECK(r == ncclSuccess, "ncclGetUniqueId failed: ", ncclGetErrorString(r));
  NcclUniqueId out;
  std::memcpy(out.data(), &id, out.size());
  return out;
}

NcclUniqueId nccl_unique_id_from_bytes(const void* bytes, size_t num_bytes) {
  LR_CHECK(bytes != nullptr, "NCCL unique id bytes must not be null");
  LR_CHECK(num_bytes == sizeof(ncclUniqueId), "an NCCL unique id has ", sizeof(ncclUniqueId),
           " bytes (got ", num_bytes, ")");
  NcclUniqueId out;
  std::memcpy(out.data(), bytes, out.size());
  return out;
}

NcclCommunicator::NcclCommunicator(const NcclUniqueId& id, int rank, int size, int device,
                                   const CommOptions& options)
    : rank_(rank),
      size_(size),
      device_(device),
      timeout_s_(resolve_timeout(options)),
      max_ctas_(resolve_nccl_max_ctas(options)) {
  LR_CHECK(size >= 1 && rank >= 0 && rank < size, "NcclCommunicator: rank ", rank,
           " is not in a group of ", size);
  LR_CHECK(timeout_s_ > 0, "NcclCommunicator: timeout_s must be > 0 (got ", timeout_s_, ")");
  LR_CUDA_CHECK(cudaSetDevice(device));
  ncclUniqueId nid;
  std::memcpy(&nid, id.data(), id.size());
  ncclConfig_t config = make_config(max_ctas_);
  pending_peers_.clear();
  LR_NCCL_ENQUEUE(ncclCommInitRankConfig(&comm_, size, nid, rank, &config));
  wait_ready("init");
  create_stream_and_events();
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, int rank, int size, int device,
                                   double timeout_s, int max_ctas, Adopt)
    : comm_(comm),
      rank_(rank),
      size_(size),
      device_(device),
      timeout_s_(timeout_s),
      max_ctas_(max_ctas) {
  create_stream_and_events();
}

void NcclCommunicator::create_stream_and_events() {
  cudaStream_t s;
  cudaEvent_t a, b;
  // The highest priority: the IPC transport's wait kernels (one thread each)
  // then take the first free SM slot ahead of the compute stream's blocks.
  int least = 0, greatest = 0;
  LR_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  LR_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, greatest));
  LR_CUDA_CHECK(cudaEventCreateWithFlags(&a, cudaEventDisableTiming));
  LR_CUDA_CHECK(cudaEventCreateWithFlags(&b, cudaEventDisableTiming));
  stream_ = s;
  ready_ = a;
  done_ = b;
}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(device_);
  if (ipc_ && !aborted_ && host_) {
    // close() is collective: every rank drains its stream, then a barrier; a
    // stream that does not drain (or a barrier that fails) leaves the buffers
    // allocated rather than freeing what a peer may still write.
    try {
      wait_stream("shutdown");
      ipc_->close(*host_);
    } catch (const Error&) {
    }
  }
  if (comm_ && !aborted_) {
    // Flush issued work (finalize is non-blocking here), bounded by the
    // deadline; a communicator that does not drain is aborted instead.
    ncclResult_t st = ncclCommFinalize(comm_);
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s_);
    while (st == ncclInProgress && Clock::now() < deadline) ncclCommGetAsyncError(comm_, &st);
    if (st == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  if (ready_) cudaEventDestroy(ready_);
  if (done_) cudaEventDestroy(done_);
  for (CUevent_st* e : timing_events_) cudaEventDestroy(e);
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::check_usable(const char* op) const {
  LR_CHECK(!aborted_, "NcclCommunicator::", op,
           ": the communicator was aborted after an earlier failure; create a new one");
}

void NcclCommunicator::abort() {
  if (aborted_) return;
  aborted_ = true;
  // First the IPC waits: they return at once and the own stream (and the
  // compute stream behind it) drains. ncclCommAbort frees device memory, which
  // waits for the device: a wait kernel still polling would hang it.
  if (ipc_) ipc_->release();
  if (comm_) ncclCommAbort(comm_);
  comm_ = nullptr;
}

bool NcclCommunicator::over_ipc(int peer) const {
  return ipc_ && ipc_->usable(peer);
}

std::string NcclCommunicator::transport_summary() const {
  if (!ipc_) return "nccl";
  const int n = ipc_->usable_peers();
  return "cuda-ipc (copy engines): " + std::to_string(n) + " of " + std::to_string(size_ - 1) +
         " peers; nccl: " + std::to_string(size_ - 1 - n);
}

void NcclCommunicator::fail(const char* what, const char* reason) {
  const std::string who = peers_str(pending_peers_);
  abort();
  LR_THROW_COMM("NCCL ", what, " ", reason, " (this is rank ", rank_, " of ", size_,
                ", waiting for ", who,
                "); the communicator was aborted. A peer failed, hung, or "
                "skipped this step. Set LIGHTRING_COMM_TIMEOUT_S to change the deadline");
}

void NcclCommunicator::poll_peer_failures(const char* what) {
  try {
    check_peer_failures();
  } catch (const CommError& e) {
    fail(what, (std::string("stopped: ") + e.what()).c_str());
  }
}

void NcclCommunicator::wait_ready(const char* what) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s_);
  for (;;) {
    ncclResult_t st = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &st);
    if (r != ncclSuccess) fail(what, ncclGetErrorString(r));
    if (st == ncclSuccess) return;
    if (st != ncclInProgress) fail(what, ncclGetErrorString(st));
    if (Clock::now() > deadline) fail(what, "timed out");
    poll_peer_failures(what);
    std::this_thread::yield();
  }
}

void NcclCommunicator::wait_stream(const char* what) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s_);
  for (;;) {
    ncclResult_t st = ncclSuccess;
    if (comm_) ncclCommGetAsyncError(comm_, &st);
    if (st != ncclSuccess && st != ncclInProgress) fail(what, ncclGetErrorString(st));
    const cudaError_t q = cudaStreamQuery(cs(stream_));
    if (q == cudaSuccess) {
      pending_peers_.clear();
      return;
    }
    if (q != cudaErrorNotReady) fail(what, cudaGetErrorString(q));
    if (Clock::now() > deadline) fail(what, "timed out");
    poll_peer_failures(what);
    std::this_thread::yield();
  }
}

void NcclCommunicator::begin(void* compute_stream) {
  LR_CUDA_CHECK(cudaSetDevice(device_));
  LR_CUDA_CHECK(cudaEventRecord(ready_, cs(compute_stream)));
  LR_CUDA_CHECK(cudaStreamWaitEvent(cs(stream_), ready_, 0));
  if (op_timing()) {
    if (timing_events_.size() < 2 * (timed_used_ + 1)) {
      for (int i = 0; i < 2; ++i) {
        cudaEvent_t e;
        LR_CUDA_CHECK(cudaEventCreate(&e));
        timing_events_.push_back(e);
      }
    }
    // Starts when the own stream may run the operation (after the compute stream reached it).
    LR_CUDA_CHECK(cudaEventRecord(timing_events_[2 * timed_used_], cs(stream_)));
  }
}

void NcclCommunicator::end(void* compute_stream) {
  if (op_timing() && timing_events_.size() >= 2 * (timed_used_ + 1)) {
    LR_CUDA_CHECK(cudaEventRecord(timing_events_[2 * timed_used_ + 1], cs(stream_)));
    ++timed_used_;
  }
  LR_CUDA_CHECK(cudaEventRecord(done_, cs(stream_)));
  LR_CUDA_CHECK(cudaStreamWaitEvent(cs(compute_stream), done_, 0));
}

double NcclCommunicator::take_op_time_ms() {
  if (timed_used_ == 0 || aborted_) {
    timed_used_ = 0;
    return 0.0;
  }
  wait_stream("op timing");  // bounded by the deadline; afterwards every event is complete
  double total = 0.0;
  for (size_t i = 0; i < timed_used_; ++i) {
    float ms = 0.0f;
    LR_CUDA_CHECK(cudaEventElapsedTime(&ms, timing_events_[2 * i], timing_events_[2 * i + 1]));
    total += ms;
  }
  timed_used_ = 0;
  return total;
}

void NcclCommunicator::send_recv(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                                 void* stream) {
  check_usable("send_recv");
  for (const SendOp& s : sends)
    LR_CHECK(s.peer >= 0 && s.peer < size_, "send_recv: send peer ", s.peer,
             " is not a rank of this group of ", size_);
  for (const RecvOp& r : recvs)
    LR_CHECK(r.peer >= 0 && r.peer < size_, "send_recv: receive peer ", r.peer,
             " is not a rank of this group of ", size_);
  begin(stream);
  // NCCL's group first, then the same-host copies: every rank orders them so,
  // and neither waits on the other kind of the same step (no cycle).
  std::vector<IpcTransport::Message> ipc_sends, ipc_recvs;
  bool any_nccl = false;
  for (const SendOp& s : sends) {
    pending_peers_.push_back(s.peer);
    if (over_ipc(s.peer))
      ipc_sends.push_back({s.peer, const_cast<float*>(s.data), s.count * sizeof(float)});
    else
      any_nccl = true;
  }
  for (const RecvOp& r : recvs) {
    pending_peers_.push_back(r.peer);
    if (over_ipc(r.peer))
      ipc_recvs.push_back({r.peer, r.data, r.count * sizeof(float)});
    else
      any_nccl = true;
  }
  if (any_nccl) {
    LR_NCCL_ENQUEUE(ncclGroupStart());
    for (const SendOp& s : sends)
      if (!over_ipc(s.peer))
        LR_NCCL_ENQUEUE(ncclSend(s.data, s.count, ncclFloat32, s.peer, comm_, cs(stream_)));
    for (const RecvOp& r : recvs)
      if (!over_ipc(r.peer))
        LR_NCCL_ENQUEUE(ncclRecv(r.data, r.count, ncclFloat32, r.peer, comm_, cs(stream_)));
    LR_NCCL_ENQUEUE(ncclGroupEnd());
    wait_ready("send/recv enqueue");
  }
  if (!ipc_sends.empty() || !ipc_recvs.empty()) ipc_->send_recv(ipc_sends, ipc_recvs, stream_);
  end(stream);
}

void NcclCommunicator::all_gather(const float* send, float* recv, size_t count, void* stream) {
  check_usable("all_gather");
  bool all_ipc = ipc_ != nullptr;
  for (int g = 0; g < size_; ++g)
    if (g != rank_) all_ipc = all_ipc && over_ipc(g);
  if (all_ipc) {
    // Every peer on this host: the own part on the compute stream, then P-1
    // messages each way through send_recv (which orders them on the own stream).
    LR_CUDA_CHECK(cudaSetDevice(device_));
    LR_CUDA_CHECK(cudaMemcpyAsync(recv + static_cast<size_t>(rank_) * count, send,
                                  count * sizeof(float), cudaMemcpyDeviceToDevice, cs(stream)));
    std::vector<SendOp> sends;
    std::vector<RecvOp> recvs;
    for (int g = 0; g < size_; ++g) {
      if (g == rank_) continue;
      sends.push_back({g, send, count});
      recvs.push_back({g, recv + static_cast<size_t>(g) * count, count});
    }
    send_recv(sends, recvs, stream);
    return;
  }
  begin(stream);
  for (int g = 0; g < size_; ++g)
    if (g != rank_) pending_peers_.push_back(g);
  LR_NCCL_ENQUEUE(ncclAllGather(send, recv, count, ncclFloat32, comm_, cs(stream_)));
  wait_ready("all-gather enqueue");
  end(stream);
}

void NcclCommunicator::set_host_channel(std::unique_ptr<Communicator> host) {
  LR_CHECK(!host || (host->rank() == rank_ && host->size() == size_),
           "NcclCommunicator::set_host_channel: the host communicator must have the same ranks "
           "(rank ",
           rank_, " of ", size_, "; got rank ", host ? host->rank() : -1, " of ",
           host ? host->size() : -1, ")");
  LR_CHECK(!host_, "NcclCommunicator::set_host_channel: the host channel is already set");
  host_ = std::move(host);
  if (!host_) return;
  // A malformed LIGHTRING_COMM_IPC still takes part in the set-up (as "off",
  // which turns the transport off on every rank) before it throws.
  bool enabled = false;
  std::string bad_env;
  try {
    enabled = env_switch("LIGHTRING_COMM_IPC");
  } catch (const Error& e) {
    bad_env = e.what();
  }
  LR_CUDA_CHECK(cudaSetDevice(device_));
  ipc_ = IpcTransport::create(*host_, rank_, size_, device_, enabled);
  LR_CHECK(bad_env.empty(), bad_env);
}

void NcclCommunicator::all_gather_host(const int64_t* send, int64_t* recv, size_t count) {
  check_usable("all_gather_host");
  if (host_) return host_->all_gather_host(send, recv, count);
  LR_CUDA_CHECK(cudaSetDevice(device_));
  // Staging: [count] for this rank's values, then [size·count] gathered.
  int64_t* staging = nullptr;
  LR_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&staging),
                                (1 + size_) * count * sizeof(int64_t), cs(stream_)));
  LR_CUDA_CHECK(
      cudaMemcpyAsync(staging, send, count * sizeof(int64_t), cudaMemcpyHostToDevice, cs(stream_)));
  for (int g = 0; g < size_; ++g)
    if (g != rank_) pending_peers_.push_back(g);
  LR_NCCL_ENQUEUE(ncclAllGather(staging, staging + count, count, ncclInt64, comm_, cs(stream_)));
  wait_ready("all-gather (shape check) enqueue");
  LR_CUDA_CHECK(cudaMemcpyAsync(recv, staging + count, size_ * count * sizeof(int64_t),
                                cudaMemcpyDeviceToHost, cs(stream_)));
  LR_CUDA_CHECK(cudaFreeAsync(staging, cs(stream_)));
  wait_stream("all-gather (shape check)");
}

void NcclCommunicator::barrier() {
  if (host_) {
    check_usable("barrier");
    return host_->barrier();
  }
  const int64_t mine = rank_;
  std::vector<int64_t> all(size_);
  all_gather_host(&mine, all.data(), 1);
}

void NcclCommunicator::synchronize(void* stream) {
  check_usable("synchronize");
  (void)stream;  // the compute stream waits on our events; draining our stream suffices
  wait_stream("synchronize");
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  check_usable("split");
#if LIGHTRING_NCCL_HAS_SPLIT
  LR_CHECK(color >= 0, "NcclCommunicator::split: color must be >= 0 (got ", color, ")");
  ncclConfig_t config = make_config(max_ctas_);
  ncclComm_t sub = nullptr;
  for (int g = 0; g < size_; ++g)
    if (g != rank_) pending_peers_.push_back(g);
  LR_NCCL_ENQUEUE(ncclCommSplit(comm_, color, key, &sub, &config));
  wait_ready("split");
  pending_peers_.clear();
  // Wait until the new communicator finished its own (non-blocking) init.
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s_);
  ncclResult_t st = ncclInProgress;
  while (st == ncclInProgress) {
    ncclCommGetAsyncError(sub, &st);
    if (Clock::now() > deadline) {
      ncclCommAbort(sub);
      fail("split", "timed out initialising the sub-communicator");
    }
  }
  LR_CHECK(st == ncclSuccess, "ncclCommSplit failed: ", ncclGetErrorString(st));
  int sub_rank = 0, sub_size = 1;
  ncclCommUserRank(sub, &sub_rank);
  ncclCommCount(sub, &sub_size);
  std::unique_ptr<NcclCommunicator> out(
      new NcclCommunicator(sub, sub_rank, sub_size, device_, timeout_s_, max_ctas_, Adopt{}));
  if (host_) out->set_host_channel(host_->split(color, key));  // same color and key: same ranks
  return out;
#else
  (void)color;
  (void)key;
  LR_THROW("NcclCommunicator::split needs NCCL >= 2.18 (this build has ", NCCL_MAJOR, ".",
           NCCL_MINOR, ")");
#endif
}

}  // namespace lightring::comm
