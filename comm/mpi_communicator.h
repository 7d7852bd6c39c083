// MpiCommunicator: the host-memory Communicator over an MPI communicator (the
// CPU path; also the bootstrap channel of NCCL).
//
// Every operation posts nonblocking requests (MPI_Isend / MPI_Irecv /
// MPI_Ibarrier) and polls them with MPI_Test until they complete or the
// deadline passes; then the pending requests are cancelled, the communicator
// is marked aborted and lightring::Error names the ranks that never answered
// (group rank and world rank). MPI_Abort is never called: the caller decides
// whether the job dies. Peers are always named by their rank in this group.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

#include "comm/communicator.h"

namespace lightring::comm {

// RAII MPI_Init_thread / MPI_Finalize for executables and tests (no-op if MPI
// is already initialised; then it does not finalise either). Sets the rank
// shown in lightring error messages to the world rank, and opens the failure
// channel (comm/mpi_environment.cpp): a private duplicate of MPI_COMM_WORLD on
// which a failing rank tells every other rank, and whose notices every wait of
// every communicator of this process polls (check_peer_failures()).
class MpiEnvironment {
 public:
  MpiEnvironment(int* argc, char*** argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;
  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  // The rank of this process among the ranks of its node (OMPI_COMM_WORLD_LOCAL_RANK or a split).
  int local_rank() const { return local_rank_; }

  // Ends this rank after a failure, and the job with it when a peer cannot end
  // its own run: prints `message` on stderr, tells every other rank (a rank
  // that waits on any communicator then throws CommError naming this one), and
  // waits up to `grace_s` for a notice from every other rank. When all have
  // reported, no rank waits on another any more: MPI is finalised (bounded by
  // `grace_s` as well) and `exit_code` is returned for main to return. When a
  // rank stays silent (stopped, dead, or computing for longer than grace_s),
  // the job ends with MPI_Abort(exit_code) after one line naming the silent
  // ranks. Call it once, from main, after the error left every communicator.
  int end_after_failure(const std::string& message, int exit_code, double grace_s);

 private:
  bool owns_ = false;
  int world_rank_ = 0, world_size_ = 1, local_rank_ = 0;
};

class MpiCommunicator final : public Communicator {
 public:
  // Works on a duplicate of `comm` (MPI_Comm_dup: its own message space).
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD, const CommOptions& options = {});
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }
  const char* backend_name() const override { return "mpi"; }

  void send_recv(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                 void* stream) override;
  void all_gather(const float* send, float* recv, size_t count, void* stream) override;
  void all_gather_host(const int64_t* send, int64_t* recv, size_t count) override;
  void barrier() override;
  void synchronize(void*) override {}
  void abort() override;
  bool aborted() const override { return aborted_; }
  std::unique_ptr<Communicator> split(int color, int key) override;
  double take_op_time_ms() override;

  // Host-only helpers (bootstrap, benchmark control), bounded by the deadline like every
  // operation: broadcast raw bytes from `root`; all-gather doubles; point-to-point bytes.
  void broadcast_bytes(void* data, size_t bytes, int root);
  void all_gather_host(const double* send, double* recv, size_t count);
  void send_bytes(const void* data, size_t bytes, int peer);
  void recv_bytes(void* data, size_t bytes, int peer);
  MPI_Comm handle() const { return comm_; }
  double timeout_s() const { return timeout_s_; }

 private:
  struct Adopt {};
  MpiCommunicator(MPI_Comm owned, double timeout_s, Adopt);

  void check_usable(const char* op) const;
  void all_gather_int64(const int64_t* send, int64_t* recv, size_t count, const char* what);
  void transfer_bytes(void* data, size_t bytes, int peer, bool send);  // send_bytes / recv_bytes
  // Polls `requests` (peers[i] is the rank behind requests[i], -1: any rank of
  // the group) until all are complete; throws CommError naming the ranks still
  // pending when the deadline passes or another rank reports a failure.
  // `collective`: the requests belong to a nonblocking collective (left pending on failure).
  void wait_all(std::vector<MPI_Request>& requests, const std::vector<int>& peers,
                const std::string& what, bool collective = false);
  std::string describe_rank(int group_rank) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_s_ = kDefaultTimeoutS;
  bool aborted_ = false;
  double op_ms_ = 0.0;  // host time of timed data operations (set_op_timing)
};

}  // namespace lightring::comm
