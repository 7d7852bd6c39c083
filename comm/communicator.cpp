// Shared helpers of the Communicator implementations.
#include "comm/communicator.h"

#include <cstdlib>
#include <string>

#include "kernels/error.h"

namespace lightring::comm {

double resolve_timeout(const CommOptions& options) {
  if (const char* s = std::getenv("LIGHTRING_COMM_TIMEOUT_S")) {
    const double t = std::atof(s);
    if (t > 0) return t;
  }
  return options.timeout_s;
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
