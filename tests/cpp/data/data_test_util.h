// Helpers of the data tests: a temporary directory, file writers, error matchers, and
// an in-memory document source.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "csrc/data/source.h"

namespace lightring::data::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lightring-data-XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs f, expects lightring::Error whose message contains every one of parts.
template <typename F>
void expect_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no lightring::Error thrown (expected one mentioning '" << parts.front()
                  << "')";
  } catch (const lightring::Error& e) {
    std::string what = e.what();
    for (const auto& p : parts) {
      EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
    }
  }
}

inline std::vector<Token> document(const DocumentSource& s, size_t d) {
  std::vector<Token> out(s.document_length(d));
  s.read(d, 0, out.size(), out.data());
  return out;
}

inline std::vector<Token> bytes_of(const std::string& s) {
  std::vector<Token> out;
  for (unsigned char c : s) out.push_back(c);
  return out;
}

// Documents held as vectors; vocab and eos as given.
class VectorSource : public DocumentSource {
 public:
  VectorSource(std::vector<std::vector<Token>> docs, uint32_t vocab, std::optional<Token> eos)
      : docs_(std::move(docs)), vocab_(vocab), eos_(eos) {}
  size_t num_documents() const override { return docs_.size(); }
  size_t document_length(size_t d) const override { return docs_[d].size(); }
  void read(size_t d, size_t offset, size_t count, Token* out) const override {
    for (size_t i = 0; i < count; ++i) out[i] = docs_[d][offset + i];
  }
  uint32_t vocab_size() const override { return vocab_; }
  std::optional<Token> eos() const override { return eos_; }
  std::string describe() const override { return "vector source"; }
  const std::vector<Token>& doc(size_t d) const { return docs_[d]; }

 private:
  std::vector<std::vector<Token>> docs_;
  uint32_t vocab_;
  std::optional<Token> eos_;
};

}  // namespace lightring::data::testing
