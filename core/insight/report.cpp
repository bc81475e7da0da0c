// Assembles the report: plot specifications per section from the run's metrics, heatmaps from
// expert_load.csv, a summary table and the config, in one HTML page.
#include "core/insight/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/insight/svg_plot.hpp"
#include "core/metrics.hpp"

namespace core::insight {
namespace {

namespace fs = std::filesystem;

const char* const kBlue = "#1f77b4";
const char* const kRed = "#d62728";
const char* const kGreen = "#2ca02c";
const char* const kOrange = "#ff7f0e";
const char* const kPurple = "#9467bd";
const char* const kGrey = "#555555";

// Sections in page order: the TensorBoard groups of core/metrics.hpp, then any other.
const std::vector<std::pair<std::string, std::string>> kSections = {
    {"loss", "Loss"},          {"moe", "MoE load balance"}, {"optim", "Optimizer"},
    {"speed", "Throughput"},   {"comm", "Communication"},   {"pipeline", "Pipeline"},
    {"other", "Other metrics"}};

// The group of every field StepMetrics logs ("" for counters that are not plotted).
std::map<std::string, std::string> field_groups() {
  std::map<std::string, std::string> g;
  StepMetrics m;
  visit_logged_fields(m,
                      [&](const char* name, const char* group, const auto&) { g[name] = group; });
  return g;
}

bool all_zero(const Series& s) {
  return std::all_of(s.values.begin(), s.values.end(), [](double v) { return v == 0; });
}

class PlotBuilder {
 public:
  explicit PlotBuilder(const RunMetrics& m) : m_(m) {}

  // Adds the series of `key` when the run logged it; optional series that are all zero (MTP
  // loss without MTP) are left out.
  bool add(LinePlot& p, const std::string& key, const std::string& label, const char* colour,
           bool markers = false, bool skip_all_zero = false) {
    used_.insert(key);
    const Series* s = m_.find(key);
    if (!s || (skip_all_zero && all_zero(*s))) return false;
    PlotSeries ps;
    ps.key = key;
    ps.label = label;
    ps.colour = colour;
    ps.x = s->steps;
    ps.y = s->values;
    ps.markers = markers;
    p.series.push_back(std::move(ps));
    return true;
  }
  void use(const std::string& key) { used_.insert(key); }
  bool used(const std::string& key) const { return used_.count(key) > 0; }

 private:
  const RunMetrics& m_;
  std::set<std::string> used_;
};

LinePlot plot(const std::string& id, const std::string& title, const std::string& y_label) {
  LinePlot p;
  p.id = id;
  p.title = title;
  p.y_label = y_label;
  return p;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

// Relative loads of one layer, binned to at most max_cols columns of averaged steps.
Heatmap layer_heatmap(int layer, const LayerLoads& loads, int experts, const std::string& name) {
  Heatmap h;
  h.layer = layer;
  h.title = name;
  const size_t n = loads.steps.size();
  const size_t max_cols = std::clamp<size_t>(16000 / std::max(1, experts), 40, 200);
  const size_t cols = std::min(n, max_cols);
  std::vector<std::vector<double>> rel(n);
  for (size_t i = 0; i < n; ++i) {
    const double m = mean(loads.loads[i]);
    for (double v : loads.loads[i]) rel[i].push_back(m > 0 ? v / m : 1.0);
  }
  for (size_t c = 0; c < cols; ++c) {
    const size_t b = c * n / cols, e = (c + 1) * n / cols;
    std::vector<double> col(experts, 0.0);
    for (size_t i = b; i < e; ++i)
      for (int k = 0; k < experts; ++k) col[k] += rel[i][k] / (e - b);
    h.value.push_back(std::move(col));
    h.steps.push_back(loads.steps[e - 1]);
  }
  if (n > 0) {
    const auto& last = rel.back();
    auto [lo, hi] = std::minmax_element(last.begin(), last.end());
    h.subtitle = fmt::format("step {}: max {} (MaxVio {}), min {}{}", loads.steps.back(),
                             format_value(*hi), format_value(*hi - 1), format_value(*lo),
                             cols < n ? fmt::format(" · {} logged steps in {} columns", n, cols)
                                      : "");
  }
  return h;
}

// "block 3" / "MTP module 1" when the config explains the CSV's layer index.
std::vector<std::string> layer_names(const ExpertLoads& loads, const Config* cfg) {
  std::vector<std::string> names;
  const int main_moe = cfg ? cfg->model.num_layers - cfg->model.first_dense_layers : 0;
  const bool known =
      cfg && static_cast<int>(loads.layers.size()) == main_moe + cfg->model.mtp.depth;
  for (const auto& [l, _] : loads.layers) {
    std::string name = fmt::format("MoE layer {}", l);
    if (known && l < main_moe)
      name += fmt::format(" (block {})", cfg->model.first_dense_layers + l);
    else if (known)
      name += fmt::format(" (MTP module {})", l - main_moe + 1);
    names.push_back(name);
  }
  return names;
}

std::string row(const std::string& k, const std::string& v) {
  return fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", xml_escape(k), xml_escape(v));
}

const char* const kStyle = R"(
body { font-family: sans-serif; margin: 24px auto; padding: 0 20px; max-width: 1400px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 28px; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
.grid svg { box-sizing: border-box; width: calc(50% - 6px); height: auto; border: 1px solid #eee; }
@media (max-width: 900px) { .grid svg { width: 100%; } }
table.summary { border-collapse: collapse; }
table.summary th { text-align: left; padding: 2px 16px 2px 0; font-weight: normal; color: #555; }
table.summary td { padding: 2px 0; font-variant-numeric: tabular-nums; }
.note { color: #8a5a00; }
pre { background: #f6f6f6; padding: 8px; font-size: 12px; }
)";

}  // namespace

ReportInput read_run(const std::string& run_dir) {
  const fs::path dir(run_dir);
  const fs::path metrics = dir / "metrics.jsonl";
  if (!fs::exists(metrics))
    FLOT_THROW(DataError,
               "{} has no metrics.jsonl: give the directory of a run (flotilla train writes "
               "runs/<run.name>/ or --run-dir)",
               run_dir);
  ReportInput in;
  fs::path name = dir.filename().empty() ? dir.parent_path().filename() : dir.filename();
  in.title = name.empty() ? run_dir : name.string();
  in.metrics = read_metrics(metrics.string());
  in.loads = read_expert_loads((dir / "expert_load.csv").string());
  std::ifstream cfg(dir / "config.yaml");
  if (cfg) {
    std::stringstream ss;
    ss << cfg.rdbuf();
    in.config_yaml = ss.str();
  }
  return in;
}

std::string render_report(const ReportInput& in) {
  const RunMetrics& m = in.metrics;
  std::unique_ptr<Config> cfg;
  if (!in.config_yaml.empty()) {
    try {
      cfg = std::make_unique<Config>(parse_config(in.config_yaml, "config.yaml"));
    } catch (const Error&) {
      // A config of another version: the report goes on without the model's shape.
    }
  }

  PlotBuilder pb(m);
  std::map<std::string, std::vector<std::string>> svgs;  // by section

  LinePlot loss = plot("lm_loss", "Loss", "cross-entropy (nats)");
  pb.add(loss, "lm_loss", "train lm loss", kBlue);
  pb.add(loss, "eval_loss", "eval loss", kRed, /*markers=*/true);
  pb.add(loss, "mtp_loss", "MTP loss", kGreen, false, /*skip_all_zero=*/true);
  pb.use("entropy_floor");
  const Series* floor = m.find("entropy_floor");
  if (floor) loss.lines.push_back({"entropy floor", floor->last(), kGrey});
  svgs["loss"].push_back(render_line_plot(loss));
  LinePlot objective = plot("loss", "Objective (lm + MTP weight x MTP + balance terms)", "loss");
  if (pb.add(objective, "loss", "objective", kBlue))
    svgs["loss"].push_back(render_line_plot(objective));

  LinePlot lr = plot("lr", "Learning rate", "lr");
  pb.add(lr, "lr", "lr", kBlue);
  svgs["optim"].push_back(render_line_plot(lr));
  LinePlot gn = plot("grad_norm", "Gradient norm (before clipping)", "global L2 norm");
  gn.log_y = true;
  pb.add(gn, "grad_norm", "grad norm", kBlue);
  svgs["optim"].push_back(render_line_plot(gn));

  LinePlot tps = plot("tokens_per_s", "Throughput", "tokens / s");
  pb.add(tps, "tokens_per_s", "tokens/s", kBlue);
  svgs["speed"].push_back(render_line_plot(tps));
  LinePlot st = plot("step_time", "Step time", "seconds");
  pb.add(st, "step_time_s", "step", kBlue);
  pb.add(st, "forward_s", "forward", kGreen);
  pb.add(st, "backward_s", "backward", kOrange);
  pb.add(st, "optimizer_s", "rest (reductions, optimizer)", kPurple);
  if (!st.series.empty()) svgs["speed"].push_back(render_line_plot(st));

  LinePlot vio =
      plot("max_vio", "MaxVio (max load / mean load - 1, mean over MoE layers)", "MaxVio");
  pb.add(vio, "max_vio", "MaxVio", kBlue);
  if (!vio.series.empty() || !in.loads.layers.empty()) svgs["moe"].push_back(render_line_plot(vio));

  const std::vector<std::string> names = layer_names(in.loads, cfg.get());
  size_t i = 0;
  for (const auto& [l, loads] : in.loads.layers)
    svgs["moe"].push_back(render_heatmap(layer_heatmap(l, loads, in.loads.experts, names[i++])));

  // Every other numeric metric (communication figures and whatever later fields log) gets its
  // own plot in the section of its group.
  const auto groups = field_groups();
  for (const auto& key : m.keys) {
    if (pb.used(key)) continue;
    auto g = groups.find(key);
    if (g != groups.end() && g->second.empty()) continue;  // counters (tokens)
    std::string section = g == groups.end() ? "other" : g->second;
    LinePlot p = plot(key, key, key);
    pb.add(p, key, key, kBlue);
    svgs[section].push_back(render_line_plot(p));
  }

  // Summary table.
  std::string summary;
  summary += row("logged steps", fmt::format("{}", m.records));
  if (const Series* s = m.find("lm_loss")) {
    summary += row("last step", format_value(s->steps.back()));
    summary += row("train lm loss (last)", format_value(s->last()));
  }
  const Series* eval = m.find("eval_loss");
  if (eval)
    summary += row("eval loss (last)", fmt::format("{} at step {}", format_value(eval->last()),
                                                   format_value(eval->steps.back())));
  if (floor) summary += row("entropy floor", format_value(floor->last()));
  if (floor && eval && cfg) {
    const double ln_v = std::log(static_cast<double>(cfg->model.vocab_size));
    const double closed = (ln_v - eval->last()) / (ln_v - floor->last());
    summary += row("gap closed (ln V to floor)", fmt::format("{:.1f}%", 100 * closed));
  }
  if (const Series* s = m.find("tokens_per_s")) {
    std::vector<double> v = s->values;
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    summary += row("tokens/s (median)", format_value(v[v.size() / 2]));
  }
  if (const Series* s = m.find("max_vio")) summary += row("MaxVio (last)", format_value(s->last()));
  if (!in.loads.layers.empty())
    summary +=
        row("MoE layers", fmt::format("{} x {} experts", in.loads.layers.size(), in.loads.experts));

  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html += fmt::format("<title>{} - flotilla run report</title>\n", xml_escape(in.title));
  html += fmt::format("<style>{}</style>\n</head>\n<body>\n", kStyle);
  html += fmt::format("<h1>Run {}</h1>\n", xml_escape(in.title));
  html += "<p>flotilla run report, from metrics.jsonl and expert_load.csv.</p>\n";
  if (m.truncated_tail || in.loads.truncated_tail)
    html +=
        "<p class=\"note\">The last line of the run's files was incomplete (a run still "
        "going, or one that was stopped) and is left out.</p>\n";
  if (m.records == 0) html += "<p class=\"note\">No step has been logged yet.</p>\n";
  html += "<table class=\"summary\">\n" + summary + "</table>\n";
  for (const auto& [key, heading] : kSections) {
    auto it = svgs.find(key);
    if (it == svgs.end() || it->second.empty()) continue;
    html += fmt::format("<h2>{}</h2>\n<div class=\"grid\">\n", heading);
    for (const auto& s : it->second) html += s;
    html += "</div>\n";
  }
  if (!in.config_yaml.empty())
    html += "<h2>Config</h2>\n<details><summary>config.yaml (resolved)</summary>\n<pre>" +
            xml_escape(in.config_yaml) + "</pre>\n</details>\n";
  html += "</body>\n</html>\n";
  return html;
}

ReportInfo write_report(const std::string& run_dir, const std::string& out_path) {
  const ReportInput in = read_run(run_dir);
  ReportInfo info;
  info.path = out_path.empty() ? (fs::path(run_dir) / "report.html").string() : out_path;
  info.records = in.metrics.records;
  info.moe_layers = in.loads.layers.size();
  info.truncated = in.metrics.truncated_tail || in.loads.truncated_tail;
  const std::string html = render_report(in);
  // Written beside and renamed, so a browser never shows half a report.
  const std::string tmp = info.path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::out | std::ios::trunc | std::ios::binary);
    out << html;
    if (!out) FLOT_THROW(DataError, "cannot write {}", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, info.path, ec);
  if (ec) FLOT_THROW(DataError, "cannot write {}: {}", info.path, ec.message());
  return info;
}

}  // namespace core::insight
