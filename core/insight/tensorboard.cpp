// Hand-written protocol-buffer encoding of TensorBoard's Event / Summary / HistogramProto and the
// TFRecord framing around it. Field numbers are those of tensorflow/core/util/event.proto and
// tensorflow/core/framework/summary.proto.
#include "core/insight/tensorboard.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.hpp"
#include "core/insight/crc32c.hpp"

namespace core::insight {
namespace {

// Wire types of the protocol-buffer encoding.
enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

// Event fields
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
// Summary fields: repeated Value value = 1; Value: tag = 1, simple_value = 2, histo = 5
constexpr uint32_t kSummaryValue = 1, kValueTag = 1, kValueSimple = 2, kValueHisto = 5;
// HistogramProto fields
constexpr uint32_t kHistoMin = 1, kHistoMax = 2, kHistoNum = 3, kHistoSum = 4, kHistoSumSquares = 5,
                   kHistoBucketLimit = 6, kHistoBucket = 7;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_key(std::string& out, uint32_t field, Wire wire) {
  put_varint(out, (field << 3) | wire);
}

// Little-endian whatever the host's byte order.
void put_le(std::string& out, uint64_t bits, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
}

void put_raw_double(std::string& out, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_le(out, bits, 8);
}

void put_double(std::string& out, uint32_t field, double v) {
  put_key(out, field, kFixed64);
  put_raw_double(out, v);
}

void put_float(std::string& out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_key(out, field, kFixed32);
  put_le(out, bits, 4);
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kBytes);
  put_varint(out, bytes.size());
  out += bytes;
}

void put_packed_doubles(std::string& out, uint32_t field, const std::vector<double>& v) {
  std::string packed;
  for (double x : v) put_raw_double(packed, x);
  put_bytes(out, field, packed);
}

// 1, 2 or 5 times a power of ten, at least x.
double nice_width(double x) {
  double p = std::pow(10.0, std::floor(std::log10(x)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= x) return m * p;
  return 10 * p;
}

std::string histogram_proto(const std::vector<double>& values) {
  std::string h;
  if (values.empty()) return h;
  auto [lo_it, hi_it] = std::minmax_element(values.begin(), values.end());
  const double lo = *lo_it, hi = *hi_it;
  double sum = 0, sum_sq = 0;
  for (double v : values) {
    sum += v;
    sum_sq += v * v;
  }
  // Bucket i covers [edge_i, edge_i+1) with edges at multiples of the width; its limit is the
  // right edge, except that the last limit is max (TensorBoard draws [min, limit_0), ...,
  // [limit_n-2, max]).
  std::vector<double> limits, counts;
  if (hi > lo) {
    const double w = nice_width((hi - lo) / 20);
    const double first = std::floor(lo / w);
    const size_t n = static_cast<size_t>(std::floor(hi / w) - first) + 1;
    counts.assign(n, 0);
    for (double v : values)
      counts[std::min(n - 1, static_cast<size_t>(std::floor(v / w) - first))] += 1;
    for (size_t i = 0; i < n; ++i) limits.push_back((first + i + 1) * w);
    limits.back() = hi;
  } else {
    limits = {hi};
    counts = {static_cast<double>(values.size())};
  }
  put_double(h, kHistoMin, lo);
  put_double(h, kHistoMax, hi);
  put_double(h, kHistoNum, static_cast<double>(values.size()));
  put_double(h, kHistoSum, sum);
  put_double(h, kHistoSumSquares, sum_sq);
  put_packed_doubles(h, kHistoBucketLimit, limits);
  put_packed_doubles(h, kHistoBucket, counts);
  return h;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "localhost";
  return buf;
}

}  // namespace

void Summary::scalar(const std::string& tag, double value) {
  std::string v;
  put_bytes(v, kValueTag, tag);
  put_float(v, kValueSimple, static_cast<float>(value));
  put_bytes(bytes_, kSummaryValue, v);
}

void Summary::histogram(const std::string& tag, const std::vector<double>& values) {
  if (values.empty()) return;
  std::string v;
  put_bytes(v, kValueTag, tag);
  put_bytes(v, kValueHisto, histogram_proto(values));
  put_bytes(bytes_, kSummaryValue, v);
}

std::string encode_event(double wall_time, int64_t step, const std::string& file_version,
                         const Summary* summary) {
  std::string e;
  put_double(e, kEventWallTime, wall_time);
  if (step != 0) {
    put_key(e, kEventStep, kVarint);
    put_varint(e, static_cast<uint64_t>(step));  // two's complement, as protobuf encodes int64
  }
  if (!file_version.empty()) put_bytes(e, kEventFileVersion, file_version);
  if (summary) put_bytes(e, kEventSummary, summary->bytes());
  return e;
}

std::string tfrecord(const std::string& data) {
  std::string r;
  std::string len;
  put_le(len, data.size(), 8);
  r += len;
  put_le(r, mask_crc32c(crc32c(len.data(), len.size())), 4);
  r += data;
  put_le(r, mask_crc32c(crc32c(data.data(), data.size())), 4);
  return r;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

EventWriter::EventWriter(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  const double now = now_seconds();
  const std::string base =
      fmt::format("{}/events.out.tfevents.{}.{}", dir, static_cast<int64_t>(now), host_name());
  path_ = base;
  // Two writers started in the same second in one directory get separate files.
  for (int i = 1; fs::exists(path_); ++i) path_ = fmt::format("{}.{}", base, i);
  out_.open(path_, std::ios::out | std::ios::binary | std::ios::trunc);
  if (!out_)
    FLOT_THROW(DataError,
               "cannot write the TensorBoard event file {} (set run.tensorboard=false "
               "to run without it)",
               path_);
  write_record(encode_event(now, 0, "brain.Event:2", nullptr));
}

void EventWriter::write(int64_t step, const Summary& summary, double wall_time) {
  write_record(encode_event(wall_time, step, "", &summary));
}

void EventWriter::write(int64_t step, const Summary& summary) {
  write(step, summary, now_seconds());
}

void EventWriter::write_record(const std::string& data) {
  const std::string r = tfrecord(data);
  out_.write(r.data(), static_cast<std::streamsize>(r.size()));
  out_.flush();
  if (!out_) FLOT_THROW(DataError, "cannot write the TensorBoard event file {}", path_);
}

}  // namespace core::insight
