// The user-facing edges of lightring-bench: --version, the error line a user reads, and the
// progress line of long rows on a terminal.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace lightring::launch {

// The version lightring-bench reports (--version, the header's `# versions:` line).
constexpr const char* kBenchVersion = "0.1.0";

// "lightring-bench 0.1.0 (commit abc1234)".
std::string version_line(const std::string& commit);

// A lightring::Error's text for the user: every " (path/file.cpp:NN)" that core/error.cpp and
// the agreement append is removed (also from nested messages). The removed locations, as
// "file.cpp:NN" without the directory, comma-separated, go to *locations when it is not null.
std::string user_message(const std::string& what, std::string* locations = nullptr);

// Whether rank 0 prints progress lines: not with --quiet; LIGHTRING_BENCH_PROGRESS=0 or 1 decides
// when set (launch/mpirun_bench.sh sets it from its own stdout: under mpirun a rank's stdout is
// a pseudo-terminal even when mpirun's is a file); otherwise whether stdout is a terminal.
bool progress_wanted(bool quiet);

// While alive, prints "# ... T s: <activity()>" to stdout every period_s (a thread of its own),
// so that a long row shows what it is doing. Does nothing when not enabled.
class ProgressTicker {
 public:
  ProgressTicker(bool enabled, double period_s = 2.0);
  ~ProgressTicker();
  ProgressTicker(const ProgressTicker&) = delete;
  ProgressTicker& operator=(const ProgressTicker&) = delete;

 private:
  void loop();

  double period_s_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace lightring::launch
