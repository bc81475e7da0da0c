// The safetensors header (built by hand in the reference's key order, parsed with nlohmann),
// the streaming writer with its XXH3 digest, and the validating reader.
#include "core/checkpoint/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/checkpoint/files.hpp"
#include "core/error.hpp"

namespace core::checkpoint {
namespace {

// A header longer than this is not a real file's (the reference refuses 100 MB as well).
constexpr uint64_t kMaxHeader = 100u << 20;

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h >> 15) << 31;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(mant), -24);  // zero and subnormals
  } else if (exp == 31) {
    f = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    f = std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
  }
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u |= sign;
  std::memcpy(&f, &u, 4);
  return f;
}

// Element i of a floating-point file dtype, as a double (exact for every dtype handled).
double element(const unsigned char* p, const std::string& t, int64_t i) {
  if (t == "F32") {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  if (t == "F64") {
    double d;
    std::memcpy(&d, p + 8 * i, 8);
    return d;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return t == "BF16" ? bf16_to_f32(h) : f16_to_f32(h);
}

std::string json_string(const std::string& s) {
  return nlohmann::json(s).dump();
}

void parse_header(const unsigned char* p, int64_t file_size, const std::string& path,
                  std::vector<TensorInfo>& tensors, std::map<std::string, std::string>& metadata,
                  int64_t& data_start) {
  if (file_size < 8)
    FLOT_THROW(DataError,
               "{}: {} bytes, shorter than the 8-byte safetensors header length; the file "
               "is truncated or not a safetensors file",
               path, file_size);
  uint64_t n = 0;
  std::memcpy(&n, p, 8);
  if (n > kMaxHeader || static_cast<int64_t>(n) > file_size - 8)
    FLOT_THROW(DataError,
               "{}: safetensors header length {} does not fit the file of {} bytes; the "
               "file is truncated or not a safetensors file",
               path, n, file_size);
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(p + 8, p + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    FLOT_THROW(DataError, "{}: the safetensors header is not valid JSON ({}); the file is corrupt",
               path, e.what());
  }
  if (!h.is_object())
    FLOT_THROW(DataError, "{}: the safetensors header is not a JSON object", path);
  data_start = 8 + static_cast<int64_t>(n);
  tensors.clear();
  metadata.clear();
  for (auto& [key, v] : h.items()) {
    if (key == "__metadata__") {
      if (!v.is_object()) FLOT_THROW(DataError, "{}: __metadata__ is not an object", path);
      for (auto& [mk, mv] : v.items()) {
        if (!mv.is_string()) FLOT_THROW(DataError, "{}: __metadata__.{} is not a string", path, mk);
        metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    TensorInfo t;
    t.name = key;
    try {
      t.dtype = v.at("dtype").get<std::string>();
      t.shape = v.at("shape").get<std::vector<int64_t>>();
      auto off = v.at("data_offsets").get<std::vector<int64_t>>();
      if (off.size() != 2) throw std::runtime_error("data_offsets needs two numbers");
      t.begin = off[0];
      t.end = off[1];
    } catch (const std::exception& e) {
      FLOT_THROW(DataError, "{}: tensor '{}' has a malformed entry ({})", path, key, e.what());
    }
    const int64_t es = st_dtype_size(t.dtype);
    if (es == 0)
      FLOT_THROW(DataError, "{}: tensor '{}' has unknown dtype '{}'", path, key, t.dtype);
    for (int64_t d : t.shape)
      if (d < 0) FLOT_THROW(DataError, "{}: tensor '{}' has a negative dimension", path, key);
    if (t.begin < 0 || t.end < t.begin || t.end - t.begin != t.numel() * es)
      FLOT_THROW(DataError,
                 "{}: tensor '{}' ({} {} elements) has data_offsets [{}, {}], which do not hold "
                 "{} bytes; the header is corrupt",
                 path, key, t.numel(), t.dtype, t.begin, t.end, t.numel() * es);
    tensors.push_back(std::move(t));
  }
  // The tensors must tile the data exactly, and the file end where the data ends.
  std::vector<const TensorInfo*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  int64_t at = 0;
  for (const TensorInfo* t : order) {
    if (t->begin != at)
      FLOT_THROW(DataError,
                 "{}: tensor '{}' starts at data byte {}, expected {} (tensors must "
                 "tile the data without holes or overlaps); the header is corrupt",
                 path, t->name, t->begin, at);
    at = t->end;
  }
  if (data_start + at != file_size)
    FLOT_THROW(DataError,
               "{}: {} bytes, but its header describes {} bytes (8 + {} header + {} data); the "
               "file is {}",
               path, file_size, data_start + at, n, at,
               file_size < data_start + at ? "truncated (an interrupted write or copy?)"
                                           : "longer than its header says");
}

}  // namespace

int64_t st_dtype_size(const std::string& t) {
  if (t == "F64" || t == "I64" || t == "U64") return 8;
  if (t == "F32" || t == "I32" || t == "U32") return 4;
  if (t == "F16" || t == "BF16" || t == "I16" || t == "U16") return 2;
  if (t == "I8" || t == "U8" || t == "BOOL" || t == "F8_E4M3" || t == "F8_E5M2") return 1;
  return 0;
}

const char* st_dtype_of(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::bf16:
      return "BF16";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::e4m3:
      return "F8_E4M3";
    case DType::e5m2:
      return "F8_E5M2";
    case DType::u8:
      return "U8";
  }
  return "?";
}

void convert_elements(const void* src, const std::string& from, int64_t n, DType to, void* dst,
                      const std::string& what) {
  if (from == st_dtype_of(to)) {
    std::memcpy(dst, src, static_cast<size_t>(n) * st_dtype_size(from));
    return;
  }
  const bool floating = from == "F32" || from == "F64" || from == "BF16" || from == "F16";
  if (!floating || !(to == DType::f32 || to == DType::f64 || to == DType::bf16))
    FLOT_THROW(DataError, "{}: cannot convert {} elements to {}", what, from, dtype_name(to));
  const auto* p = static_cast<const unsigned char*>(src);
  for (int64_t i = 0; i < n; ++i) {
    const double v = element(p, from, i);
    if (to == DType::f32)
      static_cast<float*>(dst)[i] = static_cast<float>(v);
    else if (to == DType::f64)
      static_cast<double*>(dst)[i] = v;
    else
      static_cast<uint16_t*>(dst)[i] = f32_to_bf16(static_cast<float>(v));
  }
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string hex64(uint64_t v) {
  return fmt::format("{:016x}", v);
}

std::string safetensors_header(const std::vector<TensorInfo>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  std::string j = "{";
  if (!metadata.empty()) {
    j += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      j += (first ? "" : ",") + json_string(k) + ":" + json_string(v);
      first = false;
    }
    j += "}";
  }
  int64_t at = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    const int64_t bytes = t.numel() * st_dtype_size(t.dtype);
    j += (i == 0 && metadata.empty() ? "" : ",") + json_string(t.name) +
         ":{\"dtype\":" + json_string(t.dtype) + ",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) j += (d ? "," : "") + std::to_string(t.shape[d]);
    j += "],\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(at + bytes) + "]}";
    at += bytes;
  }
  j += "}";
  j.append((8 - j.size() % 8) % 8, ' ');
  const uint64_t n = j.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + j;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<TensorInfo> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path) {
  for (const auto& t : tensors) {
    FLOT_CHECK(st_dtype_size(t.dtype) > 0, "tensor {}: dtype {}", t.name, t.dtype);
    expected_ += t.numel() * st_dtype_size(t.dtype);
  }
  const std::string header = safetensors_header(tensors, metadata);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_io("cannot create", path, errno);
  hash_ = XXH3_createState();
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(hash_));
  put(header.data(), header.size());
  expected_ += static_cast<int64_t>(header.size());
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (hash_) XXH3_freeState(static_cast<XXH3_state_t*>(hash_));
}

void SafetensorsWriter::put(const void* data, size_t bytes) {
  write_all(fd_, data, bytes, path_);
  XXH3_64bits_update(static_cast<XXH3_state_t*>(hash_), data, bytes);
  written_ += static_cast<int64_t>(bytes);
}

void SafetensorsWriter::write(const void* data, size_t bytes) {
  FLOT_CHECK(fd_ >= 0, "{} is already closed", path_);
  FLOT_CHECK(written_ + static_cast<int64_t>(bytes) <= expected_,
             "{}: {} bytes written past the {} promised", path_, written_ + bytes, expected_);
  put(data, bytes);
}

FileDigest SafetensorsWriter::finish() {
  FLOT_CHECK(fd_ >= 0, "{} is already closed", path_);
  FLOT_CHECK(written_ == expected_, "{}: {} of {} bytes written", path_, written_, expected_);
  FileDigest d{written_, XXH3_64bits_digest(static_cast<XXH3_state_t*>(hash_))};
  const int fd = fd_;
  fd_ = -1;
  sync_and_close(fd, path_);
  return d;
}

SafetensorsFile::SafetensorsFile(const std::string& path, const std::string& what)
    : file_(path, what) {
  int64_t start = 0;
  parse_header(file_.data(), file_.size(), path, tensors_, metadata_, start);
  data_ = file_.data() + start;
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void read_safetensors_header(const std::string& path, std::vector<TensorInfo>& tensors,
                             std::map<std::string, std::string>& metadata) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) FLOT_THROW(DataError, "cannot open {}: {}", path, std::strerror(errno));
  struct stat st {};
  const int64_t size = ::fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
  std::string head(8, '\0');
  uint64_t n = 0;
  if (size >= 8 && ::pread(fd, head.data(), 8, 0) == 8) std::memcpy(&n, head.data(), 8);
  // A length that does not fit is reported by parse_header from the first 8 bytes alone.
  if (n <= kMaxHeader && static_cast<int64_t>(n) <= size - 8) {
    head.resize(8 + n);
    if (::pread(fd, head.data() + 8, n, 8) != static_cast<ssize_t>(n)) {
      ::close(fd);
      FLOT_THROW(DataError, "{}: cannot read its {}-byte header: {}", path, n,
                 std::strerror(errno));
    }
  }
  ::close(fd);
  int64_t start = 0;
  parse_header(reinterpret_cast<const unsigned char*>(head.data()), size, path, tensors, metadata,
               start);
}

}  // namespace core::checkpoint
