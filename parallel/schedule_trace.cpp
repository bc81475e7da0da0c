// The simulator's text interfaces: the cost string of `flotilla schedule --simulate` and the
// Chrome trace of a simulated timeline.
#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "parallel/schedule_sim.hpp"

namespace parallel {

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

const char* category(const SimEvent& e) {
  if (e.wait) return "wait";
  switch (e.label.empty() ? '?' : e.label[0]) {
    case 'F':
      return "forward";
    case 'B':
      return "backward";
    case 'I':
      return "backward_input";
    case 'W':
      return "weight";
    case '(':
      return "pair";
    default:
      return "other";
  }
}

}  // namespace

CostModel parse_cost_model(const std::string& text) {
  CostModel cost;
  bool have_i = false;
  const std::string usage =
      "expected KEY=SECONDS pairs separated by commas, keys F, B, I, W, FB, "
      "p2p, A, fill (e.g. F=1,B=2,W=1,FB=3)";
  std::stringstream items(trim(text));
  std::string item;
  while (!items.str().empty() && std::getline(items, item, ',')) {
    item = trim(item);
    size_t eq = item.find('=');
    if (eq == std::string::npos)
      FLOT_THROW(core::ConfigError, "bad cost '{}' in '{}': {}", item, text, usage);
    std::string key = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1));
    double v = 0;
    size_t used = 0;
    try {
      v = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (value.empty() || used != value.size() || !std::isfinite(v) || v < 0)
      FLOT_THROW(core::ConfigError, "bad cost value '{}' for {} in '{}': expected a number >= 0",
                 value, key, text);
    if (key == "F")
      cost.F = v;
    else if (key == "B")
      cost.B = v;
    else if (key == "I")
      cost.I = v, have_i = true;
    else if (key == "W")
      cost.W = v;
    else if (key == "FB" || key == "F&B")
      cost.FB = v;
    else if (key == "p2p")
      cost.p2p = v;
    else if (key == "A")
      cost.A = v;
    else if (key == "fill") {
      if (v != 0 && v != 1)
        FLOT_THROW(core::ConfigError, "bad value '{}' for fill in '{}': expected 0 or 1", value, text);
      cost.fill = v;
    }
    else
      FLOT_THROW(core::ConfigError, "unknown cost key '{}' in '{}': {}", key, text, usage);
  }
  if (!have_i) cost.I = cost.W;
  return cost;
}

std::string chrome_trace(const SimResult& result) {
  using nlohmann::json;
  json events = json::array();
  events.push_back({{"ph", "M"},
                    {"name", "process_name"},
                    {"pid", 0},
                    {"args", {{"name", "pipeline (simulated)"}}}});
  for (size_t r = 0; r < result.ranks.size(); ++r) {
    events.push_back({{"ph", "M"},
                      {"name", "thread_name"},
                      {"pid", 0},
                      {"tid", r},
                      {"args", {{"name", fmt::format("rank {}", r)}}}});
    events.push_back({{"ph", "M"},
                      {"name", "thread_sort_index"},
                      {"pid", 0},
                      {"tid", r},
                      {"args", {{"sort_index", r}}}});
  }
  for (const SimEvent& e : result.events) {
    events.push_back({{"ph", "X"},
                      {"name", e.label},
                      {"cat", category(e)},
                      {"pid", 0},
                      {"tid", e.rank},
                      {"ts", e.start * 1e6},
                      {"dur", (e.end - e.start) * 1e6}});
  }
  json trace = {{"traceEvents", events}, {"displayTimeUnit", "ms"}};
  return trace.dump();
}

}  // namespace parallel
