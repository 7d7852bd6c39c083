// IpcTransport: copy-engine state messages over CUDA IPC (see ipc_transport.h).
#include "comm/ipc_transport.h"

#include <cuda.h>
#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "comm/communicator.h"
#include "comm/ipc_wait.h"
#include "core/cuda_check.h"
#include "core/error.h"

namespace lightring::comm {

namespace {

// cuStreamWriteValue32 through the runtime's driver entry points: no link-time
// dependency on libcuda (CI machines have no driver).
using MemOpFn = CUresult (*)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);

MemOpFn driver_fn(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
  LR_CUDA_CHECK(cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &found));
#else
  LR_CUDA_CHECK(cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &found));
#endif
  LR_CHECK(found == cudaDriverEntryPointSuccess && fn != nullptr,
           "IpcTransport: the driver has no ", name, " (stream memory operations need CUDA >= 12)");
  return reinterpret_cast<MemOpFn>(fn);
}

MemOpFn write_value32() {
  static const MemOpFn fn = driver_fn("cuStreamWriteValue32");
  return fn;
}

#define LR_CU_CHECK(call)                                                                \
  do {                                                                                   \
    const CUresult lr_cu_r = (call);                                                     \
    LR_CHECK(lr_cu_r == CUDA_SUCCESS, "CUDA driver call failed: ", #call, " (CUresult ", \
             static_cast<int>(lr_cu_r), ")");                                            \
  } while (0)

int64_t host_id() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return static_cast<int64_t>(std::hash<std::string>{}(name));
}

// An IPC handle travels as 8 int64 through all_gather_host.
constexpr size_t kHandleWords = sizeof(cudaIpcMemHandle_t) / sizeof(int64_t);
static_assert(sizeof(cudaIpcMemHandle_t) % sizeof(int64_t) == 0, "IPC handle size");

}  // namespace

std::unique_ptr<IpcTransport> IpcTransport::create(Communicator& host, int rank, int size,
                                                   int device, bool enabled) {
  LR_CHECK(host.rank() == rank && host.size() == size,
           "IpcTransport: the host communicator must have the same ranks");
  // 1. Who shares this host, and whether every rank wants the transport. Every
  //    rank takes part in every gather below, whatever it has to share, so
  //    that none is left waiting.
  const int64_t me = host_id();
  const int64_t id_and_on[2] = {me, enabled ? 1 : 0};
  std::vector<int64_t> gathered(2 * static_cast<size_t>(size));
  host.all_gather_host(id_and_on, gathered.data(), 2);
  std::vector<int64_t> hosts(size);
  for (int g = 0; g < size; ++g) {
    if (!gathered[2 * g + 1]) return nullptr;  // the same answer on every rank
    hosts[g] = gathered[2 * g];
  }

  std::unique_ptr<IpcTransport> t(new IpcTransport);
  t->rank_ = rank;
  t->size_ = size;
  t->device_ = device;
  t->peers_.resize(size);
  int local = 0;
  for (int g = 0; g < size; ++g) {
    if (g == rank || hosts[g] != me) continue;
    Peer& p = t->peers_[g];
    p.same_host = true;
    p.my_inbox_index = local++;
    // The peer numbers its same-host senders in rank order, itself left out.
    p.inbox_index = 0;
    for (int u = 0; u < rank; ++u)
      if (u != g && hosts[u] == me) ++p.inbox_index;
  }

  // 2. Allocate and export. A failure here is shared, not thrown.
  std::vector<int64_t> mine(1 + 2 * kHandleWords, 0);
  try {
    LR_CUDA_CHECK(cudaSetDevice(device));
    const size_t words = 4 * static_cast<size_t>(size) * sizeof(uint32_t);
    LR_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&t->words_), words));
    LR_CUDA_CHECK(cudaMemset(t->words_, 0, words));
    LR_CUDA_CHECK(
        cudaHostAlloc(reinterpret_cast<void**>(&t->abort_), sizeof(int), cudaHostAllocMapped));
    *t->abort_ = 0;
    cudaIpcMemHandle_t h{};
    LR_CUDA_CHECK(cudaIpcGetMemHandle(&h, t->words_));
    std::memcpy(&mine[1], &h, sizeof(h));
    if (local > 0) {
      LR_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&t->inbox_),
                               static_cast<size_t>(local) * kSlots * kSlotBytes));
      LR_CUDA_CHECK(cudaIpcGetMemHandle(&h, t->inbox_));
      std::memcpy(&mine[1 + kHandleWords], &h, sizeof(h));
    }
    mine[0] = 1;
  } catch (const Error&) {
    cudaGetLastError();
    mine[0] = 0;
  }
  std::vector<int64_t> all(mine.size() * size);
  host.all_gather_host(mine.data(), all.data(), mine.size());

  // 3. Open the handles of the same-host peers that exported theirs.
  std::vector<int64_t> opened(size, 0);
  for (int g = 0; g < size; ++g) {
    Peer& p = t->peers_[g];
    const int64_t* theirs = &all[g * mine.size()];
    if (!p.same_host || !mine[0] || !theirs[0]) continue;
    cudaIpcMemHandle_t hw{}, hi{};
    std::memcpy(&hw, theirs + 1, sizeof(hw));
    std::memcpy(&hi, theirs + 1 + kHandleWords, sizeof(hi));
    void* w = nullptr;
    void* in = nullptr;
    if (cudaIpcOpenMemHandle(&w, hw, cudaIpcMemLazyEnablePeerAccess) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    if (cudaIpcOpenMemHandle(&in, hi, cudaIpcMemLazyEnablePeerAccess) != cudaSuccess) {
      cudaGetLastError();
      cudaIpcCloseMemHandle(w);
      continue;
    }
    p.remote_words = static_cast<uint32_t*>(w);
    p.remote_inbox = static_cast<char*>(in);
    opened[g] = 1;
  }

  // 4. A pair is usable when both ends opened the other's handles.
  std::vector<int64_t> matrix(static_cast<size_t>(size) * size);
  host.all_gather_host(opened.data(), matrix.data(), size);
  for (int g = 0; g < size; ++g) {
    Peer& p = t->peers_[g];
    p.usable = opened[g] && matrix[static_cast<size_t>(g) * size + rank];
    if (!p.usable) unmap(p);
  }
  if (t->usable_peers() > 0) write_value32();  // resolve it now: fail at set-up, not mid-step
  return t;
}

IpcTransport::~IpcTransport() {
  if (closed_) return;
  // Not closed (an aborted communicator): a peer may still write into the
  // exported words and inbox, so they stay allocated; the mappings of the
  // peers' buffers are dropped.
  cudaSetDevice(device_);
  for (Peer& p : peers_) unmap(p);
}

void IpcTransport::unmap(Peer& p) {
  if (p.remote_words) cudaIpcCloseMemHandle(p.remote_words);
  if (p.remote_inbox) cudaIpcCloseMemHandle(p.remote_inbox);
  p.remote_words = nullptr;
  p.remote_inbox = nullptr;
}

int IpcTransport::usable_peers() const {
  return static_cast<int>(
      std::count_if(peers_.begin(), peers_.end(), [](const Peer& p) { return p.usable; }));
}

void IpcTransport::close(Communicator& host) {
  if (closed_) return;
  host.barrier();  // every rank drained its streams: nobody writes here any more
  cudaSetDevice(device_);
  for (Peer& p : peers_) unmap(p);
  if (words_) cudaFree(words_);
  if (inbox_) cudaFree(inbox_);
  if (abort_) cudaFreeHost(abort_);
  words_ = nullptr;
  inbox_ = nullptr;
  abort_ = nullptr;
  closed_ = true;
}

void IpcTransport::wait_geq(const uint32_t* word, uint32_t value, CUstream_st* stream) {
  ipc_wait(word, value, abort_, stream);  // a cyclic comparison: counters may wrap
}

void IpcTransport::signal(uint32_t* remote, uint32_t* local_word, uint32_t value,
                          CUstream_st* stream) {
  // The write carries a memory fence; the 4-byte copy runs after every copy
  // before it on the stream, so the peer sees the data before the value.
  LR_CU_CHECK(write_value32()(reinterpret_cast<CUstream>(stream),
                              reinterpret_cast<CUdeviceptr>(local_word), value,
                              CU_STREAM_WRITE_VALUE_DEFAULT));
  LR_CUDA_CHECK(cudaMemcpyAsync(remote, local_word, sizeof(uint32_t), cudaMemcpyDeviceToDevice,
                                reinterpret_cast<cudaStream_t>(stream)));
}

void IpcTransport::send_chunk(int peer, const char* src, size_t bytes, CUstream_st* stream) {
  Peer& p = peers_[peer];
  const uint32_t k = ++p.sent;
  if (k > static_cast<uint32_t>(kSlots))
    wait_geq(&words_[size_ + peer], k - kSlots, stream);  // the peer emptied this slot
  char* dst =
      p.remote_inbox + (static_cast<size_t>(p.inbox_index) * kSlots + k % kSlots) * kSlotBytes;
  LR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                                reinterpret_cast<cudaStream_t>(stream)));
  signal(p.remote_words + rank_, &words_[2 * size_ + peer], k, stream);  // ready
}

void IpcTransport::recv_chunk(int peer, char* dst, size_t bytes, CUstream_st* stream) {
  Peer& p = peers_[peer];
  const uint32_t k = ++p.received;
  wait_geq(&words_[peer], k, stream);
  const char* src =
      inbox_ + (static_cast<size_t>(p.my_inbox_index) * kSlots + k % kSlots) * kSlotBytes;
  LR_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                                reinterpret_cast<cudaStream_t>(stream)));
  signal(p.remote_words + size_ + rank_, &words_[3 * size_ + peer], k, stream);  // ack
}

void IpcTransport::send_recv(const std::vector<Message>& sends, const std::vector<Message>& recvs,
                             CUstream_st* stream) {
  LR_CHECK(!closed_, "IpcTransport::send_recv after close()");
  // Per peer, the chunks of its messages in posting order.
  struct Chunk {
    char* data;
    size_t bytes;
  };
  std::vector<std::vector<Chunk>> out(size_), in(size_);
  auto split = [&](const Message& m, std::vector<std::vector<Chunk>>& to, const char* what) {
    LR_CHECK(usable(m.peer), "IpcTransport: ", what, " peer ", m.peer,
             " is not reachable over IPC");
    for (size_t off = 0; off < m.bytes; off += kSlotBytes)
      to[m.peer].push_back({static_cast<char*>(m.data) + off, std::min(kSlotBytes, m.bytes - off)});
  };
  for (const Message& m : sends) split(m, out, "send");
  for (const Message& m : recvs) split(m, in, "receive");
  size_t rounds = 0;
  for (int g = 0; g < size_; ++g) rounds = std::max({rounds, out[g].size(), in[g].size()});
  for (size_t j = 0; j < rounds; ++j) {
    for (int g = 0; g < size_; ++g)
      if (j < out[g].size()) send_chunk(g, out[g][j].data, out[g][j].bytes, stream);
    for (int g = 0; g < size_; ++g)
      if (j < in[g].size()) recv_chunk(g, in[g][j].data, in[g][j].bytes, stream);
  }
}

void IpcTransport::release() {
  // A host store to mapped memory: the wait kernels see it and return, whatever
  // the GPU's queues hold.
  if (abort_) *static_cast<volatile int*>(abort_) = 1;
}

}  // namespace lightring::comm
