// --version, user-facing error lines and the progress ticker of lightring-bench.
#include "launch/bench_cli.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "launch/bench_agree.h"

namespace lightring::launch {

std::string version_line(const std::string& commit) {
  return std::string("lightring-bench ") + kBenchVersion + " (commit " + commit + ")";
}

namespace {

// Whether text[open..close] is "(PATH:DIGITS)" with PATH ending in a C++/CUDA source suffix.
bool is_location(const std::string& text, size_t open, size_t close, std::string* file_line) {
  const std::string inner = text.substr(open + 1, close - open - 1);
  const size_t colon = inner.rfind(':');
  if (colon == std::string::npos || colon + 1 == inner.size()) return false;
  for (size_t i = colon + 1; i < inner.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(inner[i]))) return false;
  const std::string path = inner.substr(0, colon);
  if (path.find(' ') != std::string::npos) return false;
  bool source = false;
  for (const char* ext : {".cpp", ".h", ".cu", ".cuh", ".cc", ".hpp"}) {
    const std::string e(ext);
    source = source ||
             (path.size() > e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0);
  }
  if (!source) return false;
  const size_t slash = path.rfind('/');
  *file_line = (slash == std::string::npos ? path : path.substr(slash + 1)) + inner.substr(colon);
  return true;
}

}  // namespace

std::string user_message(const std::string& what, std::string* locations) {
  std::string out, found;
  size_t i = 0;
  while (i < what.size()) {
    const size_t open = what.find(" (", i);
    if (open == std::string::npos) break;
    const size_t close = what.find(')', open);
    std::string file_line;
    if (close != std::string::npos && is_location(what, open + 1, close, &file_line)) {
      out += what.substr(i, open - i);
      found += (found.empty() ? "" : ", ") + file_line;
      i = close + 1;
    } else {
      out += what.substr(i, open + 2 - i);
      i = open + 2;
    }
  }
  out += what.substr(i);
  if (locations) *locations = found;
  return out;
}

bool progress_wanted(bool quiet) {
  if (quiet) return false;
  const char* env = std::getenv("LIGHTRING_BENCH_PROGRESS");
  if (env && *env) return std::string(env) != "0";
  return isatty(fileno(stdout)) != 0;
}

ProgressTicker::ProgressTicker(bool enabled, double period_s)
    : period_s_(period_s), start_(std::chrono::steady_clock::now()) {
  if (enabled) thread_ = std::thread([this] { loop(); });
}

ProgressTicker::~ProgressTicker() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ProgressTicker::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto period = std::chrono::duration<double>(period_s_);
  while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    // A '#' line, so that a file that receives it anyway stays parseable.
    std::printf("# ... %.0f s: %s\n", s, activity().c_str());
    std::fflush(stdout);
  }
}

}  // namespace lightring::launch
