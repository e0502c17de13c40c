#include "tensor/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tensor/error.h"

namespace vb {

namespace {

std::string errno_text() { return std::strerror(errno); }

std::string temporary_name(const std::filesystem::path& target) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  return (target.parent_path() / fmt::format(".{}.tmp.{}.{}.{:x}", target.filename().string(), ::getpid(),
                                             counter.fetch_add(1), salt))
      .string();
}

void write_all(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    VB_CHECK(n > 0, "{}: write failed: {}", path, errno_text());
    p += n;
    size -= size_t(n);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(const WriteBytes& write)>& body) {
  const std::filesystem::path target(path);
  const std::string tmp = temporary_name(target);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  VB_CHECK(fd >= 0, "{}: cannot create the temporary file {}: {}", path, tmp, errno_text());
  try {
    body([&](const void* data, size_t size) { write_all(fd, data, size, path); });
    VB_CHECK(::fsync(fd) == 0, "{}: fsync failed: {}", path, errno_text());
    const int rc = ::close(fd);
    fd = -1;
    VB_CHECK(rc == 0, "{}: close failed: {}", path, errno_text());
    VB_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "{}: cannot rename {} over it: {}", path, tmp,
             errno_text());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  const std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  VB_CHECK(dfd >= 0, "{}: cannot open its folder to sync it: {}", path, errno_text());
  const int rc = ::fsync(dfd);
  ::close(dfd);
  VB_CHECK(rc == 0, "{}: cannot sync its folder: {}", path, errno_text());
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](const WriteBytes& write) { write(text.data(), text.size()); });
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VB_CHECK(in.good(), "{}: cannot open: {}", path, errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace vb
