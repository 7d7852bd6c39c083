// NcclCommunicator: the device-memory Communicator (built only with NCCL;
// LIGHTRING_WITH_NCCL). Feature macros derived once from NCCL_VERSION_CODE in
// nccl_communicator.cpp.
//
// Streams: the communicator owns one CUDA stream. Every data operation records
// an event on the caller's compute stream, makes the own stream wait on it,
// enqueues the NCCL work on the own stream, records an event there and makes
// the compute stream wait on that: compute and communication are ordered by
// events, never by host synchronisation.
//
// Deadlines: the communicator is created non-blocking (ncclConfig_t.blocking =
// 0). Init, split and every enqueue poll ncclCommGetAsyncError against the
// deadline; synchronize(), all_gather_host() and barrier() poll the own stream
// (cudaStreamQuery) and the async error. When the deadline passes the
// communicator calls ncclCommAbort (which also releases kernels stuck waiting
// for a peer) and throws lightring::Error naming the peers of the pending
// operation. Work that nobody synchronises is bounded at the next synchronize().
//
// Memory ("lean" NCCL): NCCL connects buffers per channel, peer and protocol
// (Simple NCCL_BUFFSIZE 4 MiB, LL128 ~4.7 MB, LL 0.5 MB per direction by
// default); with its default of tens of channels on NVLink that is most of a GB
// per GPU (bench/NOTES.md), while a state message is only B·H·D·E·4 bytes. Init and split
// therefore cap the channels with ncclConfig_t.maxCTAs = kNcclLeanMaxCtas
// (CommOptions::nccl_max_ctas) unless the environment says otherwise:
// LIGHTRING_NCCL_LEAN=0 keeps NCCL's defaults, LIGHTRING_NCCL_MAX_CTAS=n sets
// the cap, and NCCL's own NCCL_MAX_CTAS / NCCL_MIN_CTAS / NCCL_MAX_NCHANNELS /
// NCCL_MIN_NCHANNELS, when set, win (resolve_nccl_max_ctas() in
// comm/communicator.h). Process-wide NCCL knobs (NCCL_BUFFSIZE,
// NCCL_LL128_BUFFSIZE, NCCL_LL_BUFFSIZE) are left to the launcher: they would
// also change any other NCCL communicator in the process (torch's).
//
// Same-host peers (CUDA IPC, comm/ipc_transport.h): with a host channel
// (set_host_channel; nccl_from_mpi sets one) send_recv and all_gather move the
// messages between GPUs of one host with the copy engines instead of NCCL's
// kernels, unless LIGHTRING_COMM_IPC=0 on any rank. No NCCL kernel then runs
// on such a group: NCCL's buffers are never connected and the driver never
// grows the per-thread stack reservation for NCCL's kernels (stack size x every
// resident thread of the GPU), and a 2 MB hop is a copy, not NCCL's channel-capped protocol. Peers
// on other hosts (or without peer access) still go through NCCL;
// transport_summary() says which is which. With the transport set up,
// destroying a communicator is collective (its buffers are freed after a
// barrier over the host channel, bounded by the deadline), as NCCL's finalize
// is; an aborted communicator skips it. The own stream has the highest
// priority, so that the transport's one-thread wait kernels get the first
// free SM slot.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"

struct ncclComm;
typedef struct ncclComm* ncclComm_t;
struct CUstream_st;
struct CUevent_st;

namespace lightring::comm {

// The 128 raw bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES), as the Python
// layer broadcasts them over any torch process group.
using NcclUniqueId = std::array<uint8_t, 128>;

// A fresh unique id (ncclGetUniqueId); create it on one rank and hand it to all.
NcclUniqueId nccl_unique_id();
// Checks the size and copies `num_bytes` raw bytes into an id.
NcclUniqueId nccl_unique_id_from_bytes(const void* bytes, size_t num_bytes);

class MpiCommunicator;
class IpcTransport;

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `size` ranks holding the same id; binds CUDA device `device`.
  NcclCommunicator(const NcclUniqueId& id, int rank, int size, int device,
                   const CommOptions& options = {});
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemorySpace memory_space() const override { return MemorySpace::kDevice; }
  const char* backend_name() const override { return "nccl"; }

  void send_recv(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                 void* stream) override;
  void all_gather(const float* send, float* recv, size_t count, void* stream) override;
  void all_gather_host(const int64_t* send, int64_t* recv, size_t count) override;
  void barrier() override;
  void synchronize(void* stream) override;
  void abort() override;
  bool aborted() const override { return aborted_; }
  std::unique_ptr<Communicator> split(int color, int key) override;
  double take_op_time_ms() override;

  int device() const { return device_; }
  void* comm_stream() const { return stream_; }
  // "cuda-ipc: k of n peers; nccl: the rest" or "nccl": how messages travel.
  std::string transport_summary() const;

  // Host-side collectives (all_gather_host, barrier: the shape agreement of every SP pass) go
  // through `host`, a communicator of the same ranks in the same order, instead of an NCCL
  // all-gather drained with a stream synchronisation: that all-gather waits for SMs held by the
  // kernels already queued (phase 1 of the pass) and the host then enqueues the rest of the
  // pass on an idle GPU. nccl_from_mpi sets an MPI duplicate unless
  // LIGHTRING_NCCL_HOST_AGREE=nccl. split() splits it alongside. Collective
  // (it sets up the CUDA IPC transport over the new channel); at most once.
  void set_host_channel(std::unique_ptr<Communicator> host);

 private:
  struct Adopt {};
  NcclCommunicator(ncclComm_t comm, int rank, int size, int device, double timeout_s, int max_ctas,
                   Adopt);
  void create_stream_and_events();
  void check_usable(const char* op) const;
  // Polls the async error of the communicator until it is not "in progress".
  void wait_ready(const char* what);
  // fail(what, ...) when another rank reported a failure (check_peer_failures()).
  void poll_peer_failures(const char* what);
  // Polls the own stream until it drains (and the async error stays clean).
  void wait_stream(const char* what);
  [[noreturn]] void fail(const char* what, const char* reason);
  void begin(void* compute_stream);  // own stream waits for the compute stream
  void end(void* compute_stream);    // compute stream waits for the own stream
  bool over_ipc(int peer) const;     // messages to and from `peer` use ipc_

  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1, device_ = 0;
  double timeout_s_ = kDefaultTimeoutS;
  int max_ctas_ = 0;  // ncclConfig_t.maxCTAs set at init and split (0: NCCL's default)
  bool aborted_ = false;
  CUstream_st* stream_ = nullptr;
  CUevent_st* ready_ = nullptr;         // recorded on the compute stream
  CUevent_st* done_ = nullptr;          // recorded on the own stream
  std::vector<int> pending_peers_;      // peers of the operations not yet synchronised
  std::unique_ptr<Communicator> host_;  // host-side collectives (set_host_channel), or null
  std::unique_ptr<IpcTransport> ipc_;   // same-host peers over CUDA IPC, or null
  // Op timing (set_op_timing): a pool of event pairs recorded on the own stream
  // around each data operation; the first timed_used_ pairs hold unread times.
  std::vector<CUevent_st*> timing_events_;  // [2·i] start, [2·i+1] end of operation i
  size_t timed_used_ = 0;
};

// Bootstrap from MPI: rank 0 of `mpi` creates the id and MPI-broadcasts it;
// every rank then joins an NCCL communicator of the same ranks on `device`.
// Defined only when both MPI and NCCL were found.
std::unique_ptr<NcclCommunicator> nccl_from_mpi(MpiCommunicator& mpi, int device,
                                                const CommOptions& options = {});

}  // namespace lightring::comm
