// The Communicator interface: moves fixed-size fp32 state buffers between the
// ranks of one group (docs/algorithm.md §3 only ever sends [B,H,D,E] states).
//
// Two implementations share it:
//   MpiCommunicator   host buffers, the CPU path and CI (comm/mpi_communicator.h)
//   NcclCommunicator  device buffers, its own CUDA stream (comm/nccl_communicator.h)
//
// Streams: every data operation takes the caller's *compute* stream. A device
// communicator orders its own stream after the work already on that stream
// (event), runs the operation there, and makes the compute stream wait for it
// (event): the host does not block. A host communicator ignores the stream
// (the "no-op stream", nullptr) and returns when the data has arrived.
//
// Failure: a peer that never answers must not hang the others forever. Every
// blocking wait of every implementation is bounded by one deadline
// (resolve_timeout()); when it passes, the operation throws lightring::CommError
// naming the peer(s) it was waiting for and what it was doing, and the
// communicator is aborted (unusable afterwards; destroy it). While they poll,
// the waits also call check_peer_failures(), so a rank learns at once that
// another rank gave up (MpiEnvironment::end_after_failure) instead of waiting
// for its own deadline.
//
// Communicators are RAII (the destructor frees the underlying handle) and
// non-copyable. Member functions are not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lightring::comm {

// Where the buffers of a communicator must live.
enum class MemorySpace { kHost, kDevice };

// The "lean" NCCL channel cap (CommOptions::nccl_max_ctas): a state message is
// B·H·D·E·4 bytes (2 MB at H = 32, D = E = 128), which a few channels move at
// tens of GB/s, while every channel costs NCCL device buffers per peer and
// direction (Simple NCCL_BUFFSIZE 4 MiB + LL128 ~4.7 MB + LL 0.5 MB by default).
// Why 4 and not 2: bench/NOTES.md (the channel cap) and docs/scaling.md.
constexpr int kNcclLeanMaxCtas = 4;

// The deadline when neither the caller nor LIGHTRING_COMM_TIMEOUT_S sets one.
constexpr double kDefaultTimeoutS = 300.0;

struct CommOptions {
  // Seconds a blocking wait waits for a peer before it throws; 0 means "not
  // set by the caller" (see resolve_timeout()).
  double timeout_s = 0.0;
  // NcclCommunicator only: the most channels (CTAs) NCCL may use per operation,
  // ncclConfig_t.maxCTAs. It bounds the channels NCCL connects, hence its own
  // device memory (buffers per channel, peer and protocol; NCCL opens tens of
  // channels on NVLink by default). 0 leaves NCCL's default. The environment decides first,
  // see resolve_nccl_max_ctas().
  int nccl_max_ctas = kNcclLeanMaxCtas;
};

// The deadline of every wait, in this order: options.timeout_s when the caller
// set it (> 0: an explicit flag such as lightring-bench --timeout wins), else
// the environment variable LIGHTRING_COMM_TIMEOUT_S, else kDefaultTimeoutS.
// Throws lightring::Error when options.timeout_s is negative or not finite, or
// when the variable is not a positive finite number of seconds ("5abc", "0",
// "-1", "nan" and "" are rejected, never ignored).
double resolve_timeout(const CommOptions& options);
// LIGHTRING_COMM_TIMEOUT_S parsed as above; `fallback` when it is unset.
double timeout_from_environment(double fallback);

// Peer failure notices. A probe installed by the process (MpiEnvironment
// installs one over MPI) throws lightring::CommError when another rank
// reported its own failure; every blocking wait calls check_peer_failures()
// while it polls (a no-op while no probe is installed). The probe is called on
// the thread that waits; it must be cheap (it is called about once per
// millisecond of waiting).
using PeerFailureProbe = void (*)();
void set_peer_failure_probe(PeerFailureProbe probe);
void check_peer_failures();

// The maxCTAs an NcclCommunicator sets (0: leave NCCL's default), in order:
//   0 when LIGHTRING_NCCL_LEAN=0, or when the user tuned NCCL's channels
//     (NCCL_MAX_CTAS, NCCL_MIN_CTAS, NCCL_MAX_NCHANNELS or NCCL_MIN_NCHANNELS set);
//   LIGHTRING_NCCL_MAX_CTAS when set (a positive integer; 0 also means NCCL's default);
//   options.nccl_max_ctas otherwise.
// Throws lightring::Error on a malformed LIGHTRING_NCCL_MAX_CTAS or a negative option.
int resolve_nccl_max_ctas(const CommOptions& options);

// One half of a grouped point-to-point step: `count` fp32 values to or from `peer`.
struct SendOp {
  int peer = -1;
  const float* data = nullptr;
  size_t count = 0;
};
struct RecvOp {
  int peer = -1;
  float* data = nullptr;
  size_t count = 0;
};

class Communicator {
 public:
  Communicator() = default;
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual MemorySpace memory_space() const = 0;
  // "mpi" or "nccl", for reports and messages.
  virtual const char* backend_name() const = 0;

  // Posts every send and receive of one step together (NCCL: one group), so a
  // ring step cannot deadlock whatever the order of posting; returns when all
  // have completed (host) or are ordered on `stream` (device). Several
  // messages between one pair of ranks match in posting order.
  virtual void send_recv(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                         void* stream) = 0;

  // recv[g*count + i] = send_of_rank_g[i] for every rank g: `count` fp32 values per rank.
  virtual void all_gather(const float* send, float* recv, size_t count, void* stream) = 0;

  // A small blocking all-gather of host int64 values (shapes, lengths):
  // recv[g*count + i] = send_of_rank_g[i]. Always host memory, whatever the
  // memory space of the communicator.
  virtual void all_gather_host(const int64_t* send, int64_t* recv, size_t count) = 0;

  // Waits for every rank (host-blocking, bounded by the deadline).
  virtual void barrier() = 0;

  // Waits until operations enqueued on `stream` have completed, bounded by the
  // deadline (a no-op for host communicators: their operations are complete
  // when they return).
  virtual void synchronize(void* stream) = 0;

  // Tears down the communication context after a failure. Idempotent; further
  // operations throw. The destructor of an aborted communicator is safe.
  virtual void abort() = 0;
  virtual bool aborted() const = 0;

  // A new communicator over the ranks with the same color, ordered by key
  // (MPI_Comm_split / ncclCommSplit semantics). Collective over this group.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Op timing, for benchmarks. While enabled, every data operation (send_recv,
  // all_gather) is timed: a device communicator records CUDA events on its own
  // stream around the operation, so the time runs from the moment that stream
  // may start it (the compute stream reached it) until the data has arrived,
  // waiting for a late peer included; a host communicator uses the host clock
  // around the operation. take_op_time_ms() returns the total since the last
  // call (or since enabling) and resets it; on a device communicator it first
  // waits for its stream (bounded by the deadline).
  void set_op_timing(bool enabled) {
    op_timing_ = enabled;
    take_op_time_ms();
  }
  bool op_timing() const { return op_timing_; }
  virtual double take_op_time_ms() { return 0.0; }

  // Rank convenience for the ring: previous and next rank, or -1 at the ends.
  int prev_rank() const { return rank() > 0 ? rank() - 1 : -1; }
  int next_rank() const { return rank() + 1 < size() ? rank() + 1 : -1; }

 private:
  bool op_timing_ = false;
};

// Every rank's string, in rank order, over comm.all_gather_host (lengths first, then the bytes
// padded to the longest): the texts of agreements and errors. Collective, bounded like it.
std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& mine);

}  // namespace lightring::comm
