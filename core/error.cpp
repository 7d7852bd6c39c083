#include "core/error.h"

#include <atomic>

namespace lightring {

namespace {
std::atomic<int> g_error_rank{-1};
}

void set_error_rank(int rank) {
  g_error_rank.store(rank);
}
int error_rank() {
  return g_error_rank.load();
}

namespace {
std::string located(const char* file, int line, const std::string& message) {
  std::ostringstream os;
  os << "lightring error";
  const int rank = error_rank();
  if (rank >= 0) os << " [rank " << rank << "]";
  os << ": " << message << " (" << file << ":" << line << ")";
  return os.str();
}
}  // namespace

void throw_error(const char* file, int line, const std::string& message) {
  throw Error(located(file, line, message));
}

void throw_comm_error(const char* file, int line, const std::string& message) {
  throw CommError(located(file, line, message));
}

}  // namespace lightring
