// Checked POSIX writes, fsync of files and directories, whole-file XXH3 digests.
#include "core/checkpoint/files.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "core/error.hpp"

namespace core::checkpoint {

void throw_io(const std::string& what, const std::string& path, int err) {
  FLOT_THROW(Error, "{} {}: {}", what, path, std::strerror(err));
}

void write_all(int fd, const void* data, size_t bytes, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, std::min<size_t>(bytes, size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io("cannot write", path, errno);
    }
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void sync_and_close(int fd, const std::string& path) {
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    throw_io("cannot fsync", path, err);
  }
  if (::close(fd) != 0) throw_io("cannot close", path, errno);
}

FileDigest write_file_synced(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_io("cannot create", path, errno);
  try {
    write_all(fd, content.data(), content.size(), path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  sync_and_close(fd, path);
  return {static_cast<int64_t>(content.size()), XXH3_64bits(content.data(), content.size())};
}

void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_io("cannot open directory", dir, errno);
  sync_and_close(fd, dir);
}

FileDigest digest_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) FLOT_THROW(DataError, "cannot open {}: {}", path, std::strerror(errno));
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> st(XXH3_createState(), XXH3_freeState);
  XXH3_64bits_reset(st.get());
  std::vector<char> buf(size_t{8} << 20);
  FileDigest d;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      FLOT_THROW(DataError, "cannot read {}: {}", path, std::strerror(err));
    }
    if (n == 0) break;
    XXH3_64bits_update(st.get(), buf.data(), static_cast<size_t>(n));
    d.bytes += n;
  }
  ::close(fd);
  d.xxh3 = XXH3_64bits_digest(st.get());
  return d;
}

std::string read_small_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FLOT_THROW(DataError, "cannot open {} ({}): {}", path, what, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace core::checkpoint
