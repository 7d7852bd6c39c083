// lightring error type and checking macros.
//
// Library code never calls exit(): every failure throws lightring::Error with
// a message a user can act on, prefixed by the source location (and, where the
// caller set one, the rank; see set_error_rank()).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace lightring {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A failure of communication: a deadline passed while waiting for a peer, a
// peer closed its connection, or another rank reported its own failure
// (comm::check_peer_failures). The communicator that threw it is aborted.
class CommError : public Error {
 public:
  using Error::Error;
};

// Rank shown in error messages of this process (-1: not distributed).
void set_error_rank(int rank);
int error_rank();

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
[[noreturn]] void throw_comm_error(const char* file, int line, const std::string& message);

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& value, const Rest&... rest) {
  os << value;
  append(os, rest...);
}
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  append(os, args...);
  return os.str();
}
}  // namespace detail

}  // namespace lightring

// LR_CHECK(cond, "q and k must have the same head dim (got ", a, " and ", b, ")")
#define LR_CHECK(cond, ...)                                                                   \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      ::lightring::throw_error(__FILE__, __LINE__, ::lightring::detail::concat(__VA_ARGS__)); \
    }                                                                                         \
  } while (0)

#define LR_THROW(...) \
  ::lightring::throw_error(__FILE__, __LINE__, ::lightring::detail::concat(__VA_ARGS__))

#define LR_THROW_COMM(...) \
  ::lightring::throw_comm_error(__FILE__, __LINE__, ::lightring::detail::concat(__VA_ARGS__))
