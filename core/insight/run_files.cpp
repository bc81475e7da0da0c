// Tolerant readers of metrics.jsonl and expert_load.csv: complete lines are data, an incomplete
// last line is the mark of a run that is still writing (or was killed) and is skipped.
#include "core/insight/run_files.hpp"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"

namespace core::insight {
namespace {

struct Lines {
  std::vector<std::string> lines;
  bool last_unterminated = false;  // the writer had not finished the last line
};

Lines read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) FLOT_THROW(DataError, "cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) FLOT_THROW(DataError, "cannot read {}", path);
  const std::string text = ss.str();
  Lines out;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) {
      out.last_unterminated = true;
      end = text.size();
    }
    std::string line = text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.lines.push_back(line);
    begin = end + 1;
  }
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

bool parse_number(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

}  // namespace

const Series* RunMetrics::find(const std::string& key) const {
  auto it = series.find(key);
  return it == series.end() || it->second.empty() ? nullptr : &it->second;
}

RunMetrics read_metrics(const std::string& path) {
  RunMetrics m;
  const std::vector<std::string> lines = read_lines(path).lines;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    nlohmann::json j = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    const bool ok = j.is_object() && j.contains("step") && j["step"].is_number();
    if (!ok) {
      if (i + 1 == lines.size()) {
        m.truncated_tail = true;
        break;
      }
      FLOT_THROW(DataError,
                 "{}:{}: not a metrics record (a JSON object with a step); only the last line "
                 "may be incomplete",
                 path, i + 1);
    }
    const double step = j["step"].get<double>();
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "step" || !it.value().is_number()) continue;
      auto [pos, fresh] = m.series.try_emplace(it.key());
      if (fresh) m.keys.push_back(it.key());
      pos->second.steps.push_back(step);
      pos->second.values.push_back(it.value().get<double>());
    }
    ++m.records;
  }
  return m;
}

ExpertLoads read_expert_loads(const std::string& path) {
  ExpertLoads out;
  if (!std::filesystem::exists(path)) return out;
  const Lines file = read_lines(path);
  const std::vector<std::string>& lines = file.lines;
  if (lines.empty() || (lines.size() == 1 && file.last_unterminated)) return out;
  const std::vector<std::string> header = split(lines[0], ',');
  if (header.size() < 3 || header[0] != "step" || header[1] != "layer")
    FLOT_THROW(DataError, "{}:1: expected the header step,layer,e0,...", path);
  out.experts = static_cast<int>(header.size()) - 2;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::vector<std::string> cells = split(lines[i], ',');
    std::vector<double> v(cells.size());
    // An unterminated last row may have lost digits even when its cell count is right.
    bool ok = cells.size() == header.size() && !(i + 1 == lines.size() && file.last_unterminated);
    for (size_t c = 0; ok && c < cells.size(); ++c) ok = parse_number(cells[c], v[c]);
    if (!ok) {
      if (i + 1 == lines.size()) {
        out.truncated_tail = true;
        break;
      }
      FLOT_THROW(DataError, "{}:{}: expected {} numbers (step, layer, one load per expert)", path,
                 i + 1, header.size());
    }
    LayerLoads& layer = out.layers[static_cast<int>(v[1])];
    layer.steps.push_back(static_cast<int64_t>(v[0]));
    layer.loads.emplace_back(v.begin() + 2, v.end());
  }
  return out;
}

}  // namespace core::insight
