// safetensors: the tensor file format of the HF ecosystem, written and read here directly (no
// library for it is packaged for Debian; the format is small and fully specified).
//
// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data.
//   {"__metadata__": {"k": "v", ...},
//    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// Offsets are relative to the start of the data; the tensors tile the data exactly (no holes, no
// overlaps); the header is padded with spaces to a multiple of 8 bytes. The writer emits keys in
// data order with the fields in the order of the reference implementation, so its files are
// byte-identical to the reference's for the same tensors in the same order (tested).
//
// The writer streams: the header is computed from the tensors' names, dtypes and shapes, then
// the data is appended in order, hashed (XXH3-64) on the way, fsynced and closed. The reader
// checks the header (length, JSON, dtypes, shapes against offsets, tiling, exact file size)
// before it hands out any tensor, and throws core::DataError naming the file and the fault.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/data/mmap_file.hpp"
#include "core/dtype.hpp"

namespace core::checkpoint {

// Element types of a safetensors file ("F32", "BF16", "F16", "F64", "I32", "I64", ...).
int64_t st_dtype_size(const std::string& dtype);  // 0 for a name the format does not define
// The file dtype of a core dtype (f32 -> "F32", bf16 -> "BF16", ...).
const char* st_dtype_of(DType t);
// Converts n elements of file dtype `from` at src into `to` at dst: F32, F64, BF16, F16 into
// f32, f64 or bf16; same-type copies of any dtype. Throws DataError for other pairs.
void convert_elements(const void* src, const std::string& from, int64_t n, DType to, void* dst,
                      const std::string& what);

struct TensorInfo {
  std::string name;
  std::string dtype;  // file dtype ("F32", "BF16", ...)
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;  // byte offsets within the data (reader; the writer computes them)
  int64_t numel() const;
};

// What finish() reports about a written file (for a manifest).
struct FileDigest {
  int64_t bytes = 0;
  uint64_t xxh3 = 0;
};
std::string hex64(uint64_t v);  // 16 lowercase hex digits

// The header bytes (length prefix, JSON, padding) for tensors laid out in the given order.
std::string safetensors_header(const std::vector<TensorInfo>& tensors,
                               const std::map<std::string, std::string>& metadata);

class SafetensorsWriter {
 public:
  // Creates (truncates) `path` and writes the header. Throws core::Error naming the path and the
  // system's reason when the file cannot be created or written.
  SafetensorsWriter(const std::string& path, std::vector<TensorInfo> tensors,
                    const std::map<std::string, std::string>& metadata);
  ~SafetensorsWriter();  // closes (and leaves) an unfinished file; never throws
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  // Appends the next bytes of data (tensors in the order given, each whole, back to back).
  void write(const void* data, size_t bytes);
  // Checks that exactly the promised bytes were written, fsyncs and closes.
  FileDigest finish();

 private:
  void put(const void* data, size_t bytes);
  std::string path_;
  int fd_ = -1;
  int64_t expected_ = 0, written_ = 0;
  void* hash_ = nullptr;  // XXH3_state_t
};

class SafetensorsFile {
 public:
  // Maps and validates `path`; `what` names the file's role in messages.
  explicit SafetensorsFile(const std::string& path, const std::string& what = "safetensors file");
  const std::string& path() const { return file_.path(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // The tensor with this name, or null.
  const TensorInfo* find(const std::string& name) const;
  // The tensor's bytes in the mapping.
  const unsigned char* data(const TensorInfo& t) const { return data_ + t.begin; }
  int64_t size() const { return file_.size(); }
  const unsigned char* bytes() const { return file_.data(); }

 private:
  data::MmapFile file_;
  const unsigned char* data_ = nullptr;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// Parses only the header of a safetensors file (reads its first 8 + N bytes): names, dtypes,
// shapes, offsets and metadata, checked as by SafetensorsFile (the file's size included).
void read_safetensors_header(const std::string& path, std::vector<TensorInfo>& tensors,
                             std::map<std::string, std::string>& metadata);

}  // namespace core::checkpoint
