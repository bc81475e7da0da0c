// MmapFile: open + fstat + mmap with errors that name the file and the system's reason.
#include "core/data/mmap_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.hpp"

namespace core::data {

MmapFile::MmapFile(const std::string& path, const std::string& what) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    FLOT_THROW(DataError, "cannot open {} '{}': {}{}", what, path, std::strerror(err),
               err == ENOENT ? " (check data.path; relative paths are relative to the working "
                               "directory)"
                             : "");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    FLOT_THROW(DataError, "cannot stat {} '{}': {}", what, path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    FLOT_THROW(DataError, "{} '{}' is not a regular file", what, path);
  }
  size_ = static_cast<int64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      FLOT_THROW(DataError, "cannot memory-map {} '{}' ({} bytes): {}", what, path, size_,
                 std::strerror(err));
    }
    data_ = static_cast<const unsigned char*>(p);
  }
  // The mapping keeps the file alive; the descriptor is no longer needed.
  ::close(fd);
}

MmapFile::~MmapFile() { release(); }

MmapFile::MmapFile(MmapFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      path_(std::move(other.path_)) {}

MmapFile& MmapFile::operator=(MmapFile&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    path_ = std::move(other.path_);
  }
  return *this;
}

void MmapFile::release() noexcept {
  if (data_) ::munmap(const_cast<unsigned char*>(data_), static_cast<size_t>(size_));
  data_ = nullptr;
  size_ = 0;
}

void MmapFile::advise_random() const {
  if (data_) ::madvise(const_cast<unsigned char*>(data_), static_cast<size_t>(size_), MADV_RANDOM);
}

void MmapFile::advise_sequential() const {
  if (data_)
    ::madvise(const_cast<unsigned char*>(data_), static_cast<size_t>(size_), MADV_SEQUENTIAL);
}

}  // namespace core::data
