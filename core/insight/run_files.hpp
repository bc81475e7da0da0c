// Reading a run directory's metrics.jsonl and expert_load.csv back (formats: docs/usage.md and
// core/metrics.cpp), for the HTML report.
//
// A run that is still going or was killed can leave its last line incomplete: a last line that
// does not parse (or, in the CSV, is short) is ignored and reported in `truncated_tail`. A bad
// line anywhere else is a DataError naming file:line.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace core::insight {

// One numeric metric over the logged steps (only the records that carry it).
struct Series {
  std::vector<double> steps, values;
  bool empty() const { return values.empty(); }
  double last() const { return values.back(); }
};

struct RunMetrics {
  size_t records = 0;
  std::vector<std::string> keys;  // numeric keys in order of first appearance ("step" excluded)
  std::map<std::string, Series> series;
  bool truncated_tail = false;
  const Series* find(const std::string& key) const;
};

// Tokens per expert at each logged step, per MoE layer.
struct LayerLoads {
  std::vector<int64_t> steps;
  std::vector<std::vector<double>> loads;  // [logged step][expert]
};

struct ExpertLoads {
  int experts = 0;
  std::map<int, LayerLoads> layers;  // by the CSV's layer index (the MoE layers in model order)
  bool truncated_tail = false;
};

// Throws DataError when the file cannot be read or holds a bad line before the last.
RunMetrics read_metrics(const std::string& path);
// A missing file gives no layers (a dense model, or a run that logged nothing yet).
ExpertLoads read_expert_loads(const std::string& path);

}  // namespace core::insight
