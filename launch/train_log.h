// lightring-train's reports: the JSONL log (one JSON object per line, docs/training.md) and the
// progress lines on stdout. Rank 0 writes both.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace lightring::launch {

// One JSON object built field by field: {"step":1,"loss":2.5,...}. Numbers are written with
// 17 significant digits (doubles read back exactly); NaN and infinities become null.
class JsonObject {
 public:
  JsonObject& add(const std::string& key, double value);
  JsonObject& add(const std::string& key, long long value);
  JsonObject& add(const std::string& key, int value) { return add(key, (long long)value); }
  JsonObject& add(const std::string& key, const std::string& value);
  JsonObject& add(const std::string& key, const char* value) {
    return add(key, std::string(value));
  }
  JsonObject& add_null(const std::string& key);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};

// A JSON string literal of s (quotes, backslashes and control characters escaped).
std::string json_string(const std::string& s);

// The JSONL file: opened for appending when resuming (the run continues its log), truncated
// otherwise; every line is flushed when written. An empty path writes nothing.
class JsonlLog {
 public:
  JsonlLog() = default;
  JsonlLog(const std::string& path, bool append);
  ~JsonlLog();
  JsonlLog(const JsonlLog&) = delete;
  JsonlLog& operator=(const JsonlLog&) = delete;
  void write(const JsonObject& row);

 private:
  std::FILE* file_ = nullptr;
};

// "1h02m", "3m05s", "12.3s".
std::string format_duration(double seconds);
// "12.3k", "4.56M".
std::string format_count(double value);
// The peak resident memory of this process in MB (getrusage).
double max_rss_mb();

}  // namespace lightring::launch
