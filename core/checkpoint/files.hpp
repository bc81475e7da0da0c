// Durable file operations for checkpoints: every write is checked and reported with the path and
// the system's reason (a full disk says "No space left on device"), files and directories are
// fsynced before a checkpoint is made visible, and files are hashed with XXH3-64 for the
// manifest.
#pragma once

#include <cstdint>
#include <string>

#include "core/checkpoint/safetensors.hpp"

namespace core::checkpoint {

// Throws core::Error "<what> <path>: <strerror(err)>".
[[noreturn]] void throw_io(const std::string& what, const std::string& path, int err);
// write(2) until every byte is out (retrying short writes and EINTR).
void write_all(int fd, const void* data, size_t bytes, const std::string& path);
// fsync + close, both checked.
void sync_and_close(int fd, const std::string& path);
// Writes `content` to `path` (truncating), fsyncs it; returns its size and hash.
FileDigest write_file_synced(const std::string& path, const std::string& content);
// fsyncs a directory, so that the entries created or renamed in it are durable.
void sync_dir(const std::string& dir);
// Size and XXH3-64 of a whole file, read in large blocks. Throws DataError when unreadable.
FileDigest digest_file(const std::string& path);
// Reads a whole small file; DataError when it cannot.
std::string read_small_file(const std::string& path, const std::string& what);

}  // namespace core::checkpoint
