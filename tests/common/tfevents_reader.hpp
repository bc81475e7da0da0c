// A small reader of TensorBoard event files for tests, written from the format definitions and
// independent of core/insight: TFRecord framing with both masked CRC32C checked (a bitwise CRC
// here, not the library's table), and the Event / Summary / HistogramProto fields Flotilla writes.
// Unknown fields are skipped by wire type, as protobuf readers do.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace testing {

inline uint32_t bitwise_crc32c(const std::string& data) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char b : data) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

inline uint32_t masked(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

struct TbHistogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;
};

struct TbValue {
  std::string tag;
  bool has_simple = false;
  float simple_value = 0;
  bool has_histo = false;
  TbHistogram histo;
};

struct TbEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<TbValue> values;
};

class ProtoReader {
 public:
  explicit ProtoReader(const std::string& b) : b_(b) {}
  bool done() const { return i_ >= b_.size(); }
  // Reads a key: field number and wire type.
  void key(uint32_t& field, uint32_t& wire) {
    uint64_t k = varint();
    field = static_cast<uint32_t>(k >> 3);
    wire = static_cast<uint32_t>(k & 7);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t c = byte();
      v |= static_cast<uint64_t>(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
    throw std::runtime_error("varint too long");
  }
  uint64_t fixed(int bytes) {
    uint64_t v = 0;
    for (int k = 0; k < bytes; ++k) v |= static_cast<uint64_t>(byte()) << (8 * k);
    return v;
  }
  double f64() {
    uint64_t bits = fixed(8);
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  float f32() {
    uint32_t bits = static_cast<uint32_t>(fixed(4));
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  std::string bytes() {
    uint64_t n = varint();
    if (n > b_.size() - i_) throw std::runtime_error("length past the end of the message");
    std::string s = b_.substr(i_, n);
    i_ += n;
    return s;
  }
  void skip(uint32_t wire) {
    if (wire == 0)
      varint();
    else if (wire == 1)
      fixed(8);
    else if (wire == 2)
      bytes();
    else if (wire == 5)
      fixed(4);
    else
      throw std::runtime_error("unsupported wire type " + std::to_string(wire));
  }

 private:
  uint8_t byte() {
    if (i_ >= b_.size()) throw std::runtime_error("message ends inside a field");
    return static_cast<uint8_t>(b_[i_++]);
  }
  const std::string& b_;
  size_t i_ = 0;
};

inline std::vector<double> packed_doubles(const std::string& b) {
  if (b.size() % 8) throw std::runtime_error("packed doubles of odd length");
  std::vector<double> v(b.size() / 8);
  ProtoReader r(b);
  for (auto& x : v) x = r.f64();
  return v;
}

// Calls handle(field, wire, reader) for every field of message `b`; a field it does not take
// (returns false) is skipped by its wire type.
template <class Handle>
void for_each_field(const std::string& b, Handle&& handle) {
  ProtoReader r(b);
  while (!r.done()) {
    uint32_t f, w;
    r.key(f, w);
    if (!handle(f, w, r)) r.skip(w);
  }
}

inline TbHistogram decode_histogram(const std::string& b) {
  TbHistogram h;
  for_each_field(b, [&](uint32_t f, uint32_t w, ProtoReader& r) {
    if (f >= 1 && f <= 5 && w == 1) {
      double* dst[] = {&h.min, &h.max, &h.num, &h.sum, &h.sum_squares};
      *dst[f - 1] = r.f64();
    } else if ((f == 6 || f == 7) && w == 2) {
      auto v = packed_doubles(r.bytes());
      auto& dst = f == 6 ? h.bucket_limit : h.bucket;
      dst.insert(dst.end(), v.begin(), v.end());
    } else if ((f == 6 || f == 7) && w == 1) {
      (f == 6 ? h.bucket_limit : h.bucket).push_back(r.f64());
    } else {
      return false;
    }
    return true;
  });
  return h;
}

inline TbValue decode_value(const std::string& b) {
  TbValue v;
  for_each_field(b, [&](uint32_t f, uint32_t w, ProtoReader& r) {
    if (f == 1 && w == 2)
      v.tag = r.bytes();
    else if (f == 2 && w == 5)
      v.has_simple = true, v.simple_value = r.f32();
    else if (f == 5 && w == 2)
      v.has_histo = true, v.histo = decode_histogram(r.bytes());
    else
      return false;
    return true;
  });
  return v;
}

inline TbEvent decode_event(const std::string& b) {
  TbEvent e;
  for_each_field(b, [&](uint32_t f, uint32_t w, ProtoReader& r) {
    if (f == 1 && w == 1)
      e.wall_time = r.f64();
    else if (f == 2 && w == 0)
      e.step = static_cast<int64_t>(r.varint());
    else if (f == 3 && w == 2)
      e.file_version = r.bytes();
    else if (f == 5 && w == 2)  // Summary: repeated Value value = 1
      for_each_field(r.bytes(), [&](uint32_t sf, uint32_t sw, ProtoReader& s) {
        if (sf != 1 || sw != 2) return false;
        e.values.push_back(decode_value(s.bytes()));
        return true;
      });
    else
      return false;
    return true;
  });
  return e;
}

// The data of every TFRecord of `bytes`; throws on a bad length or CRC, or trailing bytes.
inline std::vector<std::string> tfrecords(const std::string& bytes) {
  std::vector<std::string> out;
  size_t i = 0;
  auto u32 = [&](size_t at) {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k)
      v |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[at + k])) << (8 * k);
    return v;
  };
  while (i < bytes.size()) {
    if (bytes.size() - i < 12) throw std::runtime_error("truncated record header");
    std::string len_bytes = bytes.substr(i, 8);
    uint64_t len = 0;
    for (int k = 0; k < 8; ++k)
      len |= static_cast<uint64_t>(static_cast<uint8_t>(len_bytes[k])) << (8 * k);
    if (u32(i + 8) != masked(bitwise_crc32c(len_bytes))) throw std::runtime_error("bad length CRC");
    if (bytes.size() - i - 12 < len + 4) throw std::runtime_error("truncated record");
    std::string data = bytes.substr(i + 12, len);
    if (u32(i + 12 + len) != masked(bitwise_crc32c(data))) throw std::runtime_error("bad data CRC");
    out.push_back(data);
    i += 12 + len + 4;
  }
  return out;
}

inline std::vector<TbEvent> read_events(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<TbEvent> events;
  for (const auto& rec : tfrecords(ss.str())) events.push_back(decode_event(rec));
  return events;
}

}  // namespace testing
