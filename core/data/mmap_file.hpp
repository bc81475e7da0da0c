// MmapFile: a whole file mapped read-only into memory, owned RAII-style (move-only).
//
// Opening a missing, unreadable or unmappable file throws core::DataError naming the path and the
// system's reason. An empty file is valid and has data() == nullptr, size() == 0. The mapping is
// private and read-only, so any number of threads may read it concurrently; the destructor unmaps
// and never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace core::data {

class MmapFile {
 public:
  MmapFile() = default;
  // `what` says what the file is for ("data.path", "Megatron index") in error messages.
  explicit MmapFile(const std::string& path, const std::string& what = "data file");
  ~MmapFile();
  MmapFile(MmapFile&& other) noexcept;
  MmapFile& operator=(MmapFile&& other) noexcept;
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;

  const unsigned char* data() const { return data_; }
  int64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Hints the kernel that reads will be scattered (windows at random offsets), so it does not
  // waste I/O on read-ahead, or sequential (a full scan). Best effort; never throws.
  void advise_random() const;
  void advise_sequential() const;

 private:
  void release() noexcept;
  const unsigned char* data_ = nullptr;
  int64_t size_ = 0;
  std::string path_;
};

}  // namespace core::data
