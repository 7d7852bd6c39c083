// Shared helpers of the Communicator implementations.
#include "comm/communicator.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace lightring::comm {

double timeout_from_environment(double fallback) {
  const char* s = std::getenv("LIGHTRING_COMM_TIMEOUT_S");
  if (!s) return fallback;
  char* end = nullptr;
  errno = 0;
  const double t = std::strtod(s, &end);
  LR_CHECK(*s != '\0' && end && *end == '\0' && errno == 0 && std::isfinite(t) && t > 0,
           "LIGHTRING_COMM_TIMEOUT_S must be a positive number of seconds, e.g. 60 or 0.5 (got '",
           s, "'); unset it for the default of ", kDefaultTimeoutS, " s");
  return t;
}

double resolve_timeout(const CommOptions& options) {
  LR_CHECK(std::isfinite(options.timeout_s) && options.timeout_s >= 0,
           "the communication deadline (timeout_s) must be a positive number of seconds, or 0 "
           "for LIGHTRING_COMM_TIMEOUT_S / the default (got ",
           options.timeout_s, ")");
  if (options.timeout_s > 0) return options.timeout_s;
  return timeout_from_environment(kDefaultTimeoutS);
}

std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& mine) {
  const int P = comm.size();
  const int64_t len = static_cast<int64_t>(mine.size());
  std::vector<int64_t> lens(P);
  comm.all_gather_host(&len, lens.data(), 1);
  const size_t words = static_cast<size_t>((*std::max_element(lens.begin(), lens.end()) + 7) / 8);
  std::vector<int64_t> send(std::max<size_t>(words, 1), 0), recv(send.size() * P);
  std::memcpy(send.data(), mine.data(), mine.size());
  comm.all_gather_host(send.data(), recv.data(), send.size());
  std::vector<std::string> out(P);
  for (int g = 0; g < P; ++g)
    out[g].assign(reinterpret_cast<const char*>(recv.data() + g * send.size()), lens[g]);
  return out;
}

namespace {
std::atomic<PeerFailureProbe> g_probe{nullptr};
}

void set_peer_failure_probe(PeerFailureProbe probe) {
  g_probe.store(probe);
}

void check_peer_failures() {
  if (PeerFailureProbe probe = g_probe.load()) probe();
}

int resolve_nccl_max_ctas(const CommOptions& options) {
  const char* lean = std::getenv("LIGHTRING_NCCL_LEAN");
  if (lean && std::string(lean) == "0") return 0;
  for (const char* name :
       {"NCCL_MAX_CTAS", "NCCL_MIN_CTAS", "NCCL_MAX_NCHANNELS", "NCCL_MIN_NCHANNELS"}) {
    if (std::getenv(name)) return 0;  // the user tuned NCCL: its own choice stands
  }
  if (const char* s = std::getenv("LIGHTRING_NCCL_MAX_CTAS")) {
    char* end = nullptr;
    const long n = std::strtol(s, &end, 10);
    LR_CHECK(end != s && *end == '\0' && n >= 0 && n <= 1024,
             "LIGHTRING_NCCL_MAX_CTAS must be an integer in [0, 1024], 0 for NCCL's default (got '",
             s, "')");
    return static_cast<int>(n);
  }
  LR_CHECK(options.nccl_max_ctas >= 0,
           "CommOptions::nccl_max_ctas must be >= 0, 0 for NCCL's default (got ",
           options.nccl_max_ctas, ")");
  return options.nccl_max_ctas;
}

}  // namespace lightring::comm
