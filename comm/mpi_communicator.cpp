// MpiCommunicator: nonblocking MPI requests polled against a deadline.
#include "comm/mpi_communicator.h"

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace lightring::comm {

namespace {

// Message tags; each communicator is a private duplicate, so tags only need to
// keep the operation kinds apart.
constexpr int kTagSendRecv = 101;
constexpr int kTagAllGather = 102;
constexpr int kTagAllGatherHost = 103;
constexpr int kTagAllGatherDouble = 104;
constexpr int kTagBytes = 105;

#define LR_MPI_CHECK(call)                                       \
  do {                                                           \
    const int lr_mpi_rc = (call);                                \
    if (lr_mpi_rc != MPI_SUCCESS) {                              \
      char lr_msg[MPI_MAX_ERROR_STRING];                         \
      int lr_len = 0;                                            \
      MPI_Error_string(lr_mpi_rc, lr_msg, &lr_len);              \
      LR_THROW(#call, " failed: ", std::string(lr_msg, lr_len)); \
    }                                                            \
  } while (0)

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// Posts MPI_Comm_idup, so that the duplicate is bounded by the deadline like every operation.
MPI_Request post_idup(MPI_Comm comm, MPI_Comm* out) {
  MPI_Request req = MPI_REQUEST_NULL;
  LR_MPI_CHECK(MPI_Comm_idup(comm, out, &req));
  return req;
}

}  // namespace

// --- MpiCommunicator -----------------------------------------------------------

MpiCommunicator::MpiCommunicator(MPI_Comm comm, const CommOptions& options)
    : timeout_s_(resolve_timeout(options)) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  LR_CHECK(initialized, "MpiCommunicator: MPI is not initialised (create an MpiEnvironment first)");
  // The duplicate is collective: a rank that never arrives must not hang the others.
  MPI_Comm_rank(comm, &rank_);
  MPI_Comm_size(comm, &size_);
  comm_ = comm;  // describe_rank() names peers through it until the duplicate exists
  MPI_Comm dup = MPI_COMM_NULL;
  std::vector<MPI_Request> reqs{post_idup(comm, &dup)};
  std::vector<int> peers{-1};
  wait_all(reqs, peers, "communicator set-up (MPI_Comm_idup)", /*collective=*/true);
  comm_ = dup;
}

MpiCommunicator::MpiCommunicator(MPI_Comm owned, double timeout_s, Adopt)
    : comm_(owned), timeout_s_(timeout_s) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

// An aborted communicator is deliberately not freed: peers may still deliver
// messages of the failed step to it, and a freed context id can be reused by
// the next MPI_Comm_dup, which would then match those stale messages.
MpiCommunicator::~MpiCommunicator() {
  if (comm_ != MPI_COMM_NULL && !aborted_ && !mpi_finalized()) MPI_Comm_free(&comm_);
}

void MpiCommunicator::abort() {
  aborted_ = true;
}

void MpiCommunicator::check_usable(const char* op) const {
  LR_CHECK(!aborted_, "MpiCommunicator::", op,
           ": the communicator was aborted after an earlier failure; create a new one");
}

std::string MpiCommunicator::describe_rank(int group_rank) const {
  MPI_Group group, world;
  MPI_Comm_group(comm_, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  int world_rank = MPI_UNDEFINED;
  MPI_Group_translate_ranks(group, 1, &group_rank, world, &world_rank);
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  std::ostringstream os;
  os << "rank " << group_rank;
  if (world_rank != MPI_UNDEFINED && world_rank != group_rank)
    os << " (world rank " << world_rank << ")";
  return os.str();
}

void MpiCommunicator::wait_all(std::vector<MPI_Request>& requests, const std::vector<int>& peers,
                               const std::string& what, bool collective) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_s_);
  size_t spins = 0;
  std::string reason;
  for (;;) {
    bool all_done = true;
    for (auto& r : requests) {
      if (r == MPI_REQUEST_NULL) continue;
      int done = 0;
      LR_MPI_CHECK(MPI_Test(&r, &done, MPI_STATUS_IGNORE));
      if (!done) all_done = false;
    }
    if (all_done) return;
    if (clock::now() > deadline) break;
    // Spin briefly for latency, then yield: ranks may share cores (--oversubscribe).
    if (++spins > 1000) {
      std::this_thread::yield();
      if (spins % 64 == 0) {
        try {
          check_peer_failures();
        } catch (const CommError& e) {
          reason = e.what();
          break;
        }
      }
    }
  }
  // Deadline passed or a peer gave up: name the peers, cancel what is pending, give up on this
  // communicator (see the destructor: it is not freed).
  std::ostringstream who;
  int num_pending = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i] == MPI_REQUEST_NULL) continue;
    if (num_pending++ > 0) who << ", ";
    who << (peers[i] >= 0 ? describe_rank(peers[i]) : "the other ranks of the group");
    // A pending nonblocking collective cannot be cancelled or freed: it is left to MPI.
    if (collective) continue;
    MPI_Cancel(&requests[i]);
    MPI_Request_free(&requests[i]);
  }
  aborted_ = true;
  if (!reason.empty()) {
    LR_THROW_COMM("MPI ", what, " on rank ", rank_, " of ", size_, " stopped while waiting for ",
                  who.str(), ": ", reason);
  }
  LR_THROW_COMM("MPI ", what, " timed out after ", timeout_s_, " s waiting for ", who.str(),
                " (this is rank ", rank_, " of ", size_,
                "); that peer never posted the matching operation: it failed, hung (e.g. a "
                "stopped process), or skipped this step. Set LIGHTRING_COMM_TIMEOUT_S to change "
                "the deadline");
}

namespace {
// Adds the host time of one data operation to `total` when timing is on.
class OpClock {
 public:
  OpClock(bool on, double& total) : on_(on), total_(total), t0_(std::chrono::steady_clock::now()) {}
  ~OpClock() {
    if (on_)
      total_ +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  bool on_;
  double& total_;
  std::chrono::steady_clock::time_point t0_;
};
}  // namespace

double MpiCommunicator::take_op_time_ms() {
  const double t = op_ms_;
  op_ms_ = 0.0;
  return t;
}

void MpiCommunicator::send_recv(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                                void*) {
  check_usable("send_recv");
  OpClock clock(op_timing(), op_ms_);
  std::vector<MPI_Request> reqs;
  std::vector<int> peers;
  // Checks the peer and returns the request slot of one more operation with it.
  auto post = [&](int peer, const char* what) {
    LR_CHECK(peer >= 0 && peer < size_, "send_recv: ", what, " peer ", peer,
             " is not a rank of this group of ", size_);
    peers.push_back(peer);
    reqs.emplace_back();
    return &reqs.back();
  };
  for (const RecvOp& r : recvs)
    LR_MPI_CHECK(MPI_Irecv(r.data, static_cast<int>(r.count), MPI_FLOAT, r.peer, kTagSendRecv,
                           comm_, post(r.peer, "receive")));
  for (const SendOp& s : sends)
    LR_MPI_CHECK(MPI_Isend(s.data, static_cast<int>(s.count), MPI_FLOAT, s.peer, kTagSendRecv,
                           comm_, post(s.peer, "send")));
  wait_all(reqs, peers, "send/recv");
}

namespace {

// All-gather as point-to-point messages so that a missing peer can be named.
template <typename T>
void post_all_gather(MPI_Comm comm, int rank, int size, const T* send, T* recv, size_t count,
                     MPI_Datatype type, int tag, std::vector<MPI_Request>& reqs,
                     std::vector<int>& peers) {
  std::memcpy(recv + rank * count, send, count * sizeof(T));
  for (int g = 0; g < size; ++g) {
    if (g == rank) continue;
    reqs.emplace_back();
    peers.push_back(g);
    LR_MPI_CHECK(
        MPI_Irecv(recv + g * count, static_cast<int>(count), type, g, tag, comm, &reqs.back()));
  }
  for (int g = 0; g < size; ++g) {
    if (g == rank) continue;
    reqs.emplace_back();
    peers.push_back(g);
    LR_MPI_CHECK(MPI_Isend(send, static_cast<int>(count), type, g, tag, comm, &reqs.back()));
  }
}

}  // namespace

void MpiCommunicator::all_gather(const float* send, float* recv, size_t count, void*) {
  check_usable("all_gather");
  OpClock clock(op_timing(), op_ms_);
  std::vector<MPI_Request> reqs;
  std::vector<int> peers;
  post_all_gather(comm_, rank_, size_, send, recv, count, MPI_FLOAT, kTagAllGather, reqs, peers);
  wait_all(reqs, peers, "all-gather");
}

void MpiCommunicator::all_gather_host(const int64_t* send, int64_t* recv, size_t count) {
  all_gather_int64(send, recv, count, "all-gather of host values");
}

void MpiCommunicator::all_gather_int64(const int64_t* send, int64_t* recv, size_t count,
                                       const char* what) {
  check_usable("all_gather_host");
  std::vector<MPI_Request> reqs;
  std::vector<int> peers;
  post_all_gather(comm_, rank_, size_, send, recv, count, MPI_INT64_T, kTagAllGatherHost, reqs,
                  peers);
  wait_all(reqs, peers, what);
}

void MpiCommunicator::all_gather_host(const double* send, double* recv, size_t count) {
  check_usable("all_gather_host");
  std::vector<MPI_Request> reqs;
  std::vector<int> peers;
  post_all_gather(comm_, rank_, size_, send, recv, count, MPI_DOUBLE, kTagAllGatherDouble, reqs,
                  peers);
  wait_all(reqs, peers, "all-gather (host values)");
}

void MpiCommunicator::send_bytes(const void* data, size_t bytes, int peer) {
  transfer_bytes(const_cast<void*>(data), bytes, peer, /*send=*/true);
}

void MpiCommunicator::recv_bytes(void* data, size_t bytes, int peer) {
  transfer_bytes(data, bytes, peer, /*send=*/false);
}

void MpiCommunicator::transfer_bytes(void* data, size_t bytes, int peer, bool send) {
  const char* op = send ? "send_bytes" : "recv_bytes";
  check_usable(op);
  LR_CHECK(peer >= 0 && peer < size_ && peer != rank_, op, ": peer ", peer,
           " is not another rank of this group of ", size_);
  LR_CHECK(bytes <= static_cast<size_t>(INT_MAX), op, ": a message of ", bytes,
           " bytes is over MPI's count limit (", INT_MAX, ")");
  std::vector<MPI_Request> reqs(1);
  std::vector<int> peers{peer};
  const int n = static_cast<int>(bytes);
  if (send) {
    LR_MPI_CHECK(MPI_Isend(data, n, MPI_BYTE, peer, kTagBytes, comm_, &reqs[0]));
  } else {
    LR_MPI_CHECK(MPI_Irecv(data, n, MPI_BYTE, peer, kTagBytes, comm_, &reqs[0]));
  }
  wait_all(reqs, peers, send ? "send" : "receive");
}

void MpiCommunicator::barrier() {
  check_usable("barrier");
  // A tiny all-gather rather than MPI_Ibarrier: it can name the missing rank.
  const int64_t mine = rank_;
  std::vector<int64_t> all(size_);
  all_gather_int64(&mine, all.data(), 1, "barrier");
}

void MpiCommunicator::broadcast_bytes(void* data, size_t bytes, int root) {
  check_usable("broadcast_bytes");
  std::vector<MPI_Request> reqs(1);
  std::vector<int> peers{root};
  LR_MPI_CHECK(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &reqs[0]));
  wait_all(reqs, peers, "broadcast", /*collective=*/true);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  check_usable("split");
  // MPI_Comm_split has no nonblocking form: a bounded barrier first, so that a rank that
  // never arrives fails the others here instead of hanging them in the split.
  barrier();
  MPI_Comm sub = MPI_COMM_NULL;
  LR_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  LR_CHECK(sub != MPI_COMM_NULL, "MpiCommunicator::split: color must be >= 0 (got ", color, ")");
  return std::unique_ptr<Communicator>(new MpiCommunicator(sub, timeout_s_, Adopt{}));
}

}  // namespace lightring::comm
