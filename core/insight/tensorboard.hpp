// TensorBoard event files without a protobuf dependency: the few fields of the Event, Summary and
// HistogramProto messages that scalars and histograms need, encoded by hand in the protocol-buffer
// wire format, framed as TFRecords (uint64 length, masked CRC32C of the length, data, masked
// CRC32C of the data).
//
// A file starts with an Event holding file_version "brain.Event:2"; every write() appends one
// Event holding a Summary and flushes, so a running job can be watched. Scalars are stored as
// simple_value (float32, as TensorBoard keeps them); histograms as HistogramProto.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace core::insight {

// The values of one Summary, encoded as they are added.
class Summary {
 public:
  void scalar(const std::string& tag, double value);
  // Buckets of one "nice" width (1, 2 or 5 x 10^k) spanning [min, max] in about 20 steps; the
  // first bucket starts at min and the last ends at max, as TensorBoard reads them.
  void histogram(const std::string& tag, const std::vector<double>& values);
  bool empty() const { return bytes_.empty(); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// Appends events to <dir>/events.out.tfevents.<unix seconds>.<host> (dir is created).
class EventWriter {
 public:
  // Throws DataError when the file cannot be written.
  explicit EventWriter(const std::string& dir);
  // One Event {wall_time, step, summary}, then a flush. wall_time: seconds since the epoch.
  void write(int64_t step, const Summary& summary, double wall_time);
  void write(int64_t step, const Summary& summary);  // wall_time = now
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::ofstream out_;
};

// The encodings, exposed for tests against known bytes.
// An Event message: wall_time, step (left out when 0, as proto3 writers do), then either
// file_version (when non-empty) or the summary's bytes as field 5.
std::string encode_event(double wall_time, int64_t step, const std::string& file_version,
                         const Summary* summary);
// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
std::string tfrecord(const std::string& data);

double now_seconds();

}  // namespace core::insight
