// MpiEnvironment and the failure channel (see mpi_communicator.h).
//
// The failure channel is a private duplicate of MPI_COMM_WORLD made at start-up.
// A rank that fails sends its message (tag kTagFailure, MPI_CHAR) to every other
// world rank; the probe installed with set_peer_failure_probe() looks for such a
// notice (MPI_Iprobe) whenever a communicator of this process waits, receives it
// and throws CommError naming the sender. Notices are small (eager), so sending
// them never waits for a stopped peer.
//
// Invariants: only the thread that initialised MPI calls into the channel
// (MPI_THREAD_FUNNELED); every notice received is remembered in g_reported, so
// end_after_failure() knows which ranks have already given up.
#include <mpi.h>

#include <unistd.h>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "comm/mpi_communicator.h"
#include "core/error.h"

namespace lightring::comm {

namespace {

constexpr int kTagFailure = 911;

MPI_Comm g_failure_comm = MPI_COMM_NULL;
std::set<int> g_reported;         // world ranks whose failure notice arrived
std::vector<MPI_Request> g_sent;  // this rank's notices in flight
std::string g_sent_text;          // their buffer (alive until the process ends)

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

int env_int(const char* name, int fallback) {
  const char* s = std::getenv(name);
  return s ? std::atoi(s) : fallback;
}

// Receives one pending notice, if any: returns the sender's world rank (or -1) and its text.
int receive_notice(std::string* text) {
  if (g_failure_comm == MPI_COMM_NULL || mpi_finalized()) return -1;
  int flag = 0;
  MPI_Status status;
  MPI_Iprobe(MPI_ANY_SOURCE, kTagFailure, g_failure_comm, &flag, &status);
  if (!flag) return -1;
  int count = 0;
  MPI_Get_count(&status, MPI_CHAR, &count);
  std::string buf(static_cast<size_t>(count), '\0');
  MPI_Recv(buf.data(), count, MPI_CHAR, status.MPI_SOURCE, kTagFailure, g_failure_comm,
           MPI_STATUS_IGNORE);
  g_reported.insert(status.MPI_SOURCE);
  *text = buf;
  return status.MPI_SOURCE;
}

void probe_failures() {
  std::string text;
  const int from = receive_notice(&text);
  if (from < 0) return;
  // Its first line is its error; the rest (what it was doing) stays on that rank's output.
  LR_THROW_COMM("world rank ", from, " gave up: ", text.substr(0, text.find('\n')));
}

// Calls _exit(code) unless disarmed within `seconds`: bounds MPI_Finalize after a failure.
class ExitWatchdog {
 public:
  ExitWatchdog(double seconds, int code)
      : thread_([this, seconds, code] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, std::chrono::duration<double>(seconds),
                            [this] { return done_; })) {
            std::fprintf(stderr, "lightring: MPI_Finalize did not return within %g s; exiting\n",
                         seconds);
            std::fflush(stderr);
            _exit(code);
          }
        }) {}
  ~ExitWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    LR_CHECK(rc == MPI_SUCCESS, "MPI_Init_thread failed (code ", rc, ")");
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
  if (g_failure_comm == MPI_COMM_NULL) {
    MPI_Comm_dup(MPI_COMM_WORLD, &g_failure_comm);
    set_peer_failure_probe(&probe_failures);
  }
}

MpiEnvironment::~MpiEnvironment() {
  if (!owns_ || mpi_finalized()) return;
  set_peer_failure_probe(nullptr);
  MPI_Finalize();
}

int MpiEnvironment::end_after_failure(const std::string& message, int exit_code, double grace_s) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  if (world_size_ == 1 || mpi_finalized()) return exit_code;
  set_peer_failure_probe(nullptr);

  // Tell every other rank (eager sends: they complete even toward a stopped peer).
  g_sent_text = message;
  for (int g = 0; g < world_size_; ++g) {
    if (g == world_rank_) continue;
    g_sent.emplace_back();
    MPI_Isend(g_sent_text.data(), static_cast<int>(g_sent_text.size()), MPI_CHAR, g, kTagFailure,
              g_failure_comm, &g_sent.back());
  }

  // Wait for every other rank's notice, at most grace_s.
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(grace_s);
  std::string text;
  while (static_cast<int>(g_reported.size()) < world_size_ - 1 && Clock::now() < deadline) {
    if (receive_notice(&text) < 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<int> silent;
  for (int g = 0; g < world_size_; ++g)
    if (g != world_rank_ && !g_reported.count(g)) silent.push_back(g);

  if (silent.empty()) {
    // Every rank gave up: nobody waits on anybody. Finalise (bounded), return the exit code.
    MPI_Waitall(static_cast<int>(g_sent.size()), g_sent.data(), MPI_STATUSES_IGNORE);
    ExitWatchdog watchdog(grace_s, exit_code);
    MPI_Comm_free(&g_failure_comm);
    if (owns_) MPI_Finalize();
    owns_ = false;
    return exit_code;
  }
  std::ostringstream os;
  os << "lightring [rank " << world_rank_ << "]: ending the job: world rank"
     << (silent.size() > 1 ? "s " : " ");
  for (size_t i = 0; i < silent.size(); ++i) os << (i ? ", " : "") << silent[i];
  os << " did not report within " << grace_s << " s (stopped, dead, or busy computing); MPI_Abort("
     << exit_code << ")";
  std::fprintf(stderr, "%s\n", os.str().c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  return exit_code;
}

}  // namespace lightring::comm
