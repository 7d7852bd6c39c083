// Shared helpers of the Communicator implementations.
#include "comm/communicator.h"

#include <cstdlib>

namespace lightring::comm {

double resolve_timeout(const CommOptions& options) {
  if (const char* s = std::getenv("LIGHTRING_COMM_TIMEOUT_S")) {
    const double t = std::atof(s);
    if (t > 0) return t;
  }
  return options.timeout_s;
}

}  // namespace lightring::comm
