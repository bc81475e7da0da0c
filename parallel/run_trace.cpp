// Gathering the ranks' trace events and writing them as Chrome trace JSON.
#include "parallel/run_trace.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace parallel {

const char* traffic_name(Traffic t) {
  switch (t) {
    case Traffic::expert_a2a: return "expert_a2a";
    case Traffic::gradients: return "gradients";
    case Traffic::pipeline: return "pipeline";
    default: return "other";
  }
}

std::string chrome_trace_json(const std::vector<std::vector<TraceEvent>>& events) {
  nlohmann::json out = nlohmann::json::array();
  int64_t id = 0;
  for (size_t r = 0; r < events.size(); ++r) {
    const int pid = static_cast<int>(r);
    out.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", pid}, {"args", {{"name", "rank " + std::to_string(r)}}}});
    out.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", 0}, {"args", {{"name", "compute"}}}});
    out.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", 1}, {"args", {{"name", "waiting for communication"}}}});
    for (const auto& e : events[r]) {
      const double ts = e.start * 1e6, dur = (e.end - e.start) * 1e6;
      if (e.lane == TraceLane::comm) {
        // In-flight operations overlap one another: async slices stack instead of nesting.
        nlohmann::json a{{"name", e.name}, {"cat", e.cat}, {"pid", pid}, {"tid", 2}, {"id", ++id}};
        a["ph"] = "b";
        a["ts"] = ts;
        out.push_back(a);
        a["ph"] = "e";
        a["ts"] = ts + dur;
        out.push_back(a);
      } else {
        out.push_back({{"name", e.name}, {"cat", e.cat}, {"ph", "X"}, {"ts", ts}, {"dur", dur},
                       {"pid", pid}, {"tid", e.lane == TraceLane::wait ? 1 : 0}});
      }
    }
  }
  return nlohmann::json{{"traceEvents", out}, {"displayTimeUnit", "ms"}}.dump();
}

void write_job_trace(Communicator& world, const std::vector<TraceEvent>& events, double step_start,
                     const std::string& path) {
  // Each rank's events, relative to its step start, serialized; then gathered on every rank
  // (sizes first, then bytes padded to the longest), and rank 0 writes.
  nlohmann::json mine = nlohmann::json::array();
  for (const auto& e : events)
    mine.push_back({e.name, e.cat, e.start - step_start, e.end - step_start, static_cast<int>(e.lane)});
  const std::string text = mine.dump();
  const int n = world.size();
  std::vector<double> sizes(n);
  double size = static_cast<double>(text.size());
  world.all_gather(core::Tensor::of(&size, {1}), core::Tensor::of(sizes.data(), {n}))->wait();
  int64_t longest = 0;
  for (double s : sizes) longest = std::max<int64_t>(longest, static_cast<int64_t>(s));
  longest = (longest + 3) / 4 * 4;
  std::vector<char> padded(longest, ' '), all(static_cast<size_t>(longest) * n);
  std::copy(text.begin(), text.end(), padded.begin());
  world.all_gather(core::Tensor(padded.data(), core::DType::i32, {longest / 4}),
                   core::Tensor(all.data(), core::DType::i32, {longest / 4 * n}))->wait();
  if (world.rank() != 0) return;
  std::vector<std::vector<TraceEvent>> ranks(n);
  for (int r = 0; r < n; ++r) {
    auto j = nlohmann::json::parse(std::string(all.data() + r * longest, static_cast<size_t>(sizes[r])));
    for (const auto& e : j)
      ranks[r].push_back({e[0].get<std::string>(), e[1].get<std::string>(), e[2].get<double>(),
                          e[3].get<double>(), static_cast<TraceLane>(e[4].get<int>())});
  }
  std::ofstream f(path);
  f << chrome_trace_json(ranks) << '\n';
  if (!f) FLOT_THROW(core::DataError, "cannot write the trace to '{}'", path);
}

}  // namespace parallel
