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
// implementation has a deadline (CommOptions::timeout_s); when it passes, the
// operation throws lightring::Error naming the peer(s) it was waiting for, and
// the communicator is aborted (unusable afterwards; destroy it).
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
// 4 rather than 2 since session 4 (two H200, shape agreement over MPI, 3 runs
// each): P=2 speed-up 1.89-1.91 / 1.94-1.95 / 1.94 at 64K / 256K / 1M per GPU
// against 1.89-1.90 / 1.93-1.94 / 1.91-1.92, for peak ratios 1.073 / 1.021 /
// 1.005 against 1.061 / 1.017 / 1.004 (docs/scaling.md).
constexpr int kNcclLeanMaxCtas = 4;

struct CommOptions {
  // Seconds a blocking wait (or the NCCL watchdog) waits for a peer before it
  // throws. Overridden by the environment variable LIGHTRING_COMM_TIMEOUT_S
  // when that is set (see resolve_timeout()).
  double timeout_s = 300.0;
  // NcclCommunicator only: the most channels (CTAs) NCCL may use per operation,
  // ncclConfig_t.maxCTAs. It bounds the channels NCCL connects, hence its own
  // device memory, which otherwise grows to ~0.8 GB per GPU at P = 2 on NVLink
  // (measured on H200). 0 leaves NCCL's default. The environment decides first,
  // see resolve_nccl_max_ctas().
  int nccl_max_ctas = kNcclLeanMaxCtas;
};

// timeout_s, or LIGHTRING_COMM_TIMEOUT_S when set to a positive number.
double resolve_timeout(const CommOptions& options);

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

}  // namespace lightring::comm
