// MpiCommunicator: nonblocking MPI requests polled against a deadline.
#include "comm/mpi_communicator.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "kernels/error.h"

namespace lightring::comm {

namespace {

// Message tags; each communicator is a private duplicate, so tags only need to
// keep the operation kinds apart.
constexpr int kTagSendRecv = 101;
constexpr int kTagAllGather = 102;
constexpr int kTagAllGatherHost = 103;

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

int env_int(const char* name, int fallback) {
  const char* s = std::getenv(name);
  return s ? std::atoi(s) : fallback;
}

}  // namespace

// --- MpiEnvironment ------------------------------------------------------------

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    LR_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
  const int env_local = env_int("OMPI_COMM_WORLD_LOCAL_RANK", -1);
  if (env_local >= 0) {
    local_rank_ = env_local;
  } else {
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
  }
  set_error_rank(world_rank_);
}

MpiEnvironment::~MpiEnvironment() {
  if (owns_ && !mpi_finalized()) MPI_Finalize();
}

// --- MpiCommunicator -----------------------------------------------------------

MpiCommunicator::MpiCommunicator(MPI_Comm comm, const CommOptions& options)
    : timeout_s_(resolve_timeout(options)) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  LR_CHECK(initialized, "MpiCommunicator: MPI is not initialised (create an MpiEnvironment first)");
  LR_CHECK(timeout_s_ > 0, "MpiCommunicator: timeout_s must be > 0 (got ", timeout_s_, ")");
  LR_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
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
                               const std::string& what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_s_);
  size_t spins = 0;
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
    if (++spins > 1000) std::this_thread::yield();
  }
  // Deadline passed: name the peers, cancel what is pending, give up on this communicator.
  std::ostringstream who;
  int num_pending = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i] == MPI_REQUEST_NULL) continue;
    if (num_pending++ > 0) who << ", ";
    who << describe_rank(peers[i]);
    MPI_Cancel(&requests[i]);
    MPI_Request_free(&requests[i]);
  }
  aborted_ = true;
  LR_THROW("MPI ", what, " timed out after ", timeout_s_, " s waiting for ", who.str(),
           " (this is rank ", rank_, " of ", size_,
           "); that peer never posted the matching operation: it failed, hung, or skipped this "
           "step. Set LIGHTRING_COMM_TIMEOUT_S to change the deadline");
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
  check_usable("all_gather_host");
  std::vector<MPI_Request> reqs;
  std::vector<int> peers;
  post_all_gather(comm_, rank_, size_, send, recv, count, MPI_INT64_T, kTagAllGatherHost, reqs,
                  peers);
  wait_all(reqs, peers, "all-gather (shape check)");
}

void MpiCommunicator::barrier() {
  check_usable("barrier");
  // A tiny all-gather rather than MPI_Ibarrier: it can name the missing rank.
  const int64_t mine = rank_;
  std::vector<int64_t> all(size_);
  all_gather_host(&mine, all.data(), 1);
}

void MpiCommunicator::broadcast_bytes(void* data, size_t bytes, int root) {
  check_usable("broadcast_bytes");
  std::vector<MPI_Request> reqs(1);
  std::vector<int> peers{root};
  LR_MPI_CHECK(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &reqs[0]));
  wait_all(reqs, peers, "broadcast");
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  check_usable("split");
  MPI_Comm sub = MPI_COMM_NULL;
  LR_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
  LR_CHECK(sub != MPI_COMM_NULL, "MpiCommunicator::split: color must be >= 0 (got ", color, ")");
  return std::unique_ptr<Communicator>(new MpiCommunicator(sub, timeout_s_, Adopt{}));
}

}  // namespace lightring::comm
