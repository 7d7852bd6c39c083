#include "csrc/data/io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace lightring::data {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  require_exists(path, "data file");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LR_CHECK(fd >= 0, "cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    LR_THROW("cannot stat ", path, ": ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    LR_THROW(path, " is not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    LR_CHECK(p != MAP_FAILED, "cannot map ", path, " (", size_, " bytes): ", std::strerror(err));
    data_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  release();
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void MappedFile::release() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

std::string read_file_bytes(const std::string& path) {
  require_exists(path, "data file");
  std::ifstream in(path, std::ios::binary);
  LR_CHECK(in.good(), "cannot open ", path);
  std::ostringstream os;
  os << in.rdbuf();
  LR_CHECK(!in.bad(), "cannot read ", path);
  return os.str();
}

void require_exists(const std::string& path, const char* what) {
  std::error_code ec;
  LR_CHECK(!path.empty(), what, " path is empty");
  LR_CHECK(std::filesystem::exists(path, ec), what, " not found: ", path);
}

}  // namespace lightring::data
