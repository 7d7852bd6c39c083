#include "csrc/data/text.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "csrc/data/io.h"

namespace lightring::data {
namespace fs = std::filesystem;

namespace {

bool is_blank(const std::string& s, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) {
    char c = s[i];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

// end moved back over trailing spaces, tabs, '\r' and '\n' (not before begin).
size_t trim_end(const std::string& s, size_t begin, size_t end) {
  while (end > begin &&
         (s[end - 1] == ' ' || s[end - 1] == '\t' || s[end - 1] == '\r' || s[end - 1] == '\n')) {
    --end;
  }
  return end;
}

bool hidden(const fs::path& p) {
  std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

// Calls f(begin, end) for each line of text, end excluding the '\n'.
template <typename F>
void for_each_line(const std::string& text, F f) {
  size_t begin = 0;
  while (begin < text.size()) {
    size_t nl = text.find('\n', begin);
    size_t end = nl == std::string::npos ? text.size() : nl;
    f(begin, end);
    begin = end + 1;
  }
}

// Appends text[begin, end) as one document unless it is blank.
void add_document(const std::string& text, size_t begin, size_t end, std::string& bytes,
                  std::vector<size_t>& offsets) {
  if (is_blank(text, begin, end)) return;
  bytes.append(text, begin, end - begin);
  offsets.push_back(bytes.size());
}

}  // namespace

ByteCorpus::ByteCorpus(std::string description, std::string bytes, std::vector<size_t> offsets)
    : description_(std::move(description)), bytes_(std::move(bytes)), offsets_(std::move(offsets)) {
  LR_CHECK(offsets_.size() >= 2, "empty corpus: ", description_, " holds no document");
  for (size_t d = 0; d + 1 < offsets_.size(); ++d) {
    LR_CHECK(offsets_[d] < offsets_[d + 1], description_, ": document ", d, " is empty");
  }
}

void ByteCorpus::read(size_t doc, size_t offset, size_t count, Token* out) const {
  const unsigned char* p =
      reinterpret_cast<const unsigned char*>(bytes_.data()) + offsets_[doc] + offset;
  for (size_t i = 0; i < count; ++i) out[i] = p[i];
}

void split_fortunes(const std::string& text, std::string& bytes, std::vector<size_t>& offsets) {
  // A fortune runs from the start of a line to the '\n' before the next "%" line.
  size_t start = 0;
  for_each_line(text, [&](size_t begin, size_t end) {
    size_t len = end - begin;
    bool sep = (len == 1 && text[begin] == '%') || (len == 2 && text.compare(begin, 2, "%\r") == 0);
    if (!sep) return;
    add_document(text, start, trim_end(text, start, begin), bytes, offsets);
    start = std::min(end + 1, text.size());
  });
  add_document(text, start, trim_end(text, start, text.size()), bytes, offsets);
}

void split_blocks(const std::string& text, std::string& bytes, std::vector<size_t>& offsets) {
  size_t block_begin = std::string::npos, block_end = 0;
  auto flush = [&] {
    if (block_begin != std::string::npos)
      add_document(text, block_begin, block_end, bytes, offsets);
    block_begin = std::string::npos;
  };
  for_each_line(text, [&](size_t begin, size_t end) {
    if (is_blank(text, begin, end)) {
      flush();
      return;
    }
    if (block_begin == std::string::npos) block_begin = begin;
    block_end = end;
  });
  flush();
}

std::unique_ptr<ByteCorpus> open_fortunes(const std::string& dir) {
  require_exists(dir, "fortunes directory (Debian package 'fortunes' or 'fortunes-min')");
  LR_CHECK(fs::is_directory(dir), "fortunes path is not a directory: ", dir);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const fs::path& p = entry.path();
    if (entry.is_symlink() || !entry.is_regular_file() || hidden(p)) continue;
    if (p.extension() == ".dat") continue;
    files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  std::string bytes;
  std::vector<size_t> offsets{0};
  for (const auto& p : files) split_fortunes(read_file_bytes(p.string()), bytes, offsets);
  LR_CHECK(offsets.size() >= 2, "empty corpus: no fortune in ", dir, " (", files.size(),
           " fortune files)");
  return std::make_unique<ByteCorpus>("fortunes " + dir, std::move(bytes), std::move(offsets));
}

std::unique_ptr<ByteCorpus> open_text(const std::string& path, TextSplit split) {
  require_exists(path, "text path");
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    auto it = fs::recursive_directory_iterator(path);
    for (auto end = fs::recursive_directory_iterator(); it != end; ++it) {
      if (hidden(it->path())) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::string bytes;
  std::vector<size_t> offsets{0};
  for (const auto& p : files) {
    std::string text = read_file_bytes(p.string());
    if (split == TextSplit::kFile) {
      add_document(text, 0, text.size(), bytes, offsets);
    } else {
      split_blocks(text, bytes, offsets);
    }
  }
  LR_CHECK(offsets.size() >= 2, "empty corpus: ", path, " holds no non-blank text (", files.size(),
           " files)");
  return std::make_unique<ByteCorpus>("text " + path, std::move(bytes), std::move(offsets));
}

}  // namespace lightring::data
