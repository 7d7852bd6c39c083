// File access shared by the readers: a read-only memory map, whole-file reads, and
// little-endian integer loads. Errors throw lightring::Error naming the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace lightring::data {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the token formats are little-endian; loads below assume a little-endian host");

// A whole file mapped read-only. An empty file maps to size() == 0 and data() == nullptr.
// Owns the mapping: not copyable, movable.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// The bytes of a file; throws when it cannot be opened or read.
std::string read_file_bytes(const std::string& path);

// Throws "<what> not found: <path>" unless path exists.
void require_exists(const std::string& path, const char* what);

template <typename T>
inline T load_le(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

template <typename T>
inline void append_le(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

}  // namespace lightring::data
