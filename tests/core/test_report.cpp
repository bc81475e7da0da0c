// The HTML run report from files written here: well-formed SVG, one plot per metric, one heatmap
// per MoE layer, figures taken from the metrics, truncated last lines, and the errors.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/report_svgs.hpp"
#include "common/scratch_dir.hpp"
#include "core/error.hpp"
#include "core/insight/report.hpp"
#include "core/insight/svg_plot.hpp"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A run of `steps` logged steps with 2 MoE layers of 4 experts; eval every 5 steps.
void write_run(const std::string& dir, int steps, const std::string& tail_metrics = "",
               const std::string& tail_loads = "") {
  std::ofstream m(dir + "/metrics.jsonl");
  for (int s = 1; s <= steps; ++s) {
    m << "{\"step\":" << s << ",\"loss\":" << 6.0 - 0.1 * s << ",\"lm_loss\":" << 5.5 - 0.1 * s
      << ",\"mtp_loss\":" << 5.6 - 0.1 * s << ",\"aux_loss\":0.0,\"lr\":" << 1e-3 * s / steps
      << ",\"grad_norm\":" << 1.0 / s << ",\"tokens\":" << 512 * s
      << ",\"tokens_per_s\":" << 1000 + s
      << ",\"step_time_s\":0.5,\"forward_s\":0.2,\"backward_s\":0.25,"
      << "\"optimizer_s\":0.05,\"max_vio\":" << 0.5 / s << ",\"a2a_bytes\":" << 4096 * s
      << ",\"entropy_floor\":0.3249";
    if (s % 5 == 0) m << ",\"eval_loss\":" << 5.45 - 0.1 * s;
    m << "}\n";
  }
  m << tail_metrics;
  std::ofstream l(dir + "/expert_load.csv");
  l << "step,layer,e0,e1,e2,e3\n";
  for (int s = 1; s <= steps; ++s) {
    l << s << ",0," << 100 + s << ",100,100," << 100 - s << "\n";
    l << s << ",1,50,150,100,100\n";
  }
  l << tail_loads;
}

}  // namespace

TEST_CASE("report: well-formed SVG, a plot per metric, a heatmap per MoE layer", "[report]") {
  std::string dir = testing::scratch_dir("report-full");
  write_run(dir, 12);
  auto info = core::insight::write_report(dir);
  CHECK(info.path == dir + "/report.html");
  CHECK(info.records == 12);
  CHECK(info.moe_layers == 2);
  CHECK(!info.truncated);
  const std::string html = read(info.path);
  REQUIRE(!html.empty());
  CHECK(!fs::exists(info.path + ".tmp"));

  testing::ReportSvgs r = testing::parse_report_svgs(html);
  for (const char* metric : {"lm_loss", "loss", "lr", "grad_norm", "tokens_per_s", "step_time",
                             "max_vio", "aux_loss", "a2a_bytes"}) {
    INFO(metric);
    CHECK(r.with("data-metric", metric).size() == 1);
  }
  // every metric is drawn in exactly one plot
  for (const char* key : {"lm_loss", "eval_loss", "mtp_loss", "loss", "lr", "grad_norm",
                          "tokens_per_s", "step_time_s", "forward_s", "max_vio", "a2a_bytes"}) {
    INFO(key);
    int plots = 0;
    for (const auto& s : r.svgs)
      if ((" " + s->attr("data-series") + " ").find(std::string(" ") + key + " ") !=
          std::string::npos)
        ++plots;
    CHECK(plots == 1);
  }
  CHECK(r.with("data-metric", "tokens").empty());         // a counter, not plotted
  CHECK(r.with("data-metric", "entropy_floor").empty());  // a line in the loss plot
  CHECK(r.with("class", "heatmap").size() == 2);
  CHECK(r.svgs.size() == r.with("class", "plot").size() + 2);

  // The loss plot: three series (lm, eval, MTP), the floor, and the last values in the legend.
  const testing::XmlNode& loss = *r.with("data-metric", "lm_loss")[0];
  CHECK(loss.all("polyline").size() == 3);
  const std::string loss_text = testing::svg_text(loss);
  CHECK_THAT(loss_text, Contains("train lm loss · last " + core::insight::format_value(5.5 - 1.2)));
  CHECK_THAT(loss_text, Contains("eval loss · last " + core::insight::format_value(5.45 - 1.0)));
  CHECK_THAT(loss_text, Contains("entropy floor 0.3249"));
  CHECK(loss.all("circle").size() == 2);  // eval at steps 5 and 10
  CHECK_THAT(testing::svg_text(*r.with("data-metric", "tokens_per_s")[0]), Contains("last 1012"));

  // Heatmap of layer 1: 4 expert rows; expert 1 carries 1.5x the mean at the last step.
  const testing::XmlNode& h1 = *r.with("data-layer", "1")[0];
  CHECK(h1.attr("data-experts") == "4");
  size_t rows = 0;
  for (const auto& g : h1.all("g"))
    if (!g->all("title").empty() && g->all("title")[0]->text.rfind("expert ", 0) == 0) ++rows;
  CHECK(rows == 4);
  CHECK_THAT(testing::svg_text(h1), Contains("max 1.5 (MaxVio 0.5), min 0.5"));

  // Self-contained: no script, nothing fetched (the SVG namespace is a name, not a download).
  CHECK(html.find("<script") == std::string::npos);
  size_t pos = 0;
  while ((pos = html.find("http", pos)) != std::string::npos) {
    CHECK(html.compare(pos, 26, "http://www.w3.org/2000/svg") == 0);
    pos += 4;
  }
}

TEST_CASE("report: an incomplete last line of a running or killed run is left out", "[report]") {
  std::string dir = testing::scratch_dir("report-truncated");
  write_run(dir, 6, "{\"step\":7,\"loss\":5.1,\"lm_l", "7,0,1");
  auto info = core::insight::write_report(dir, dir + "/out.html");
  CHECK(info.path == dir + "/out.html");
  CHECK(info.records == 6);
  CHECK(info.truncated);
  const std::string html = read(dir + "/out.html");
  CHECK_THAT(html, Contains("incomplete"));
  testing::ReportSvgs r = testing::parse_report_svgs(html);
  CHECK(r.with("class", "heatmap").size() == 2);
  CHECK_THAT(testing::svg_text(*r.with("data-metric", "lm_loss")[0]),
             Contains("train lm loss · last " + core::insight::format_value(5.5 - 0.6)));

  // a last CSV row with the right number of cells but no newline may have lost digits
  std::string dir2 = testing::scratch_dir("report-unterminated");
  write_run(dir2, 3, "", "4,0,1,2,3,4");
  auto in = core::insight::read_run(dir2);
  CHECK(in.loads.truncated_tail);
  CHECK(in.loads.layers.at(0).steps.size() == 3);
}

TEST_CASE("report: errors name the file and line", "[report]") {
  std::string dir = testing::scratch_dir("report-errors");
  CHECK_THROWS_AS(core::insight::write_report(dir), core::DataError);
  CHECK_THROWS_WITH(core::insight::write_report(dir), Contains("has no metrics.jsonl"));
  std::ofstream(dir + "/metrics.jsonl") << "{\"step\":1,\"loss\":2}\nnot json\n{\"step\":3}\n";
  CHECK_THROWS_WITH(core::insight::write_report(dir), Contains("metrics.jsonl:2"));
  // an empty file is a run that has not logged yet: a report that says so
  std::ofstream(dir + "/metrics.jsonl", std::ios::trunc);
  auto info = core::insight::write_report(dir);
  CHECK(info.records == 0);
  CHECK_THAT(read(info.path), Contains("No step has been logged yet"));
  CHECK_NOTHROW(testing::parse_report_svgs(read(info.path)));
}

TEST_CASE("report: long runs are thinned, spikes kept, and the SVG stays well-formed", "[report]") {
  core::insight::LinePlot p{"x", "X & <Y>", "y \"quoted\""};
  core::insight::PlotSeries s{"x", "a < b", "#000000"};
  for (int i = 1; i <= 100000; ++i) {
    s.x.push_back(i);
    s.y.push_back(i == 54321 ? 1000.0 : 1.0 + 1e-6 * i);
  }
  p.series.push_back(s);
  const std::string svg = core::insight::render_line_plot(p);
  CHECK(svg.size() < 60000);
  auto root = testing::MiniXml::parse(svg);
  auto lines = root->all("polyline");
  REQUIRE(lines.size() == 1);
  // the spike survives: some point sits at the top of the plot area
  const std::string pts = lines[0]->attr("points");
  CHECK(std::count(pts.begin(), pts.end(), ',') < 1400);
  CHECK_THAT(testing::svg_text(*root), Contains("X & <Y>"));
  CHECK_THAT(testing::svg_text(*root), Contains("last 1.1"));
  bool top = false;
  for (size_t i = 0; (i = pts.find(',', i)) != std::string::npos; ++i)
    top = top || std::stod(pts.substr(i + 1)) < 60;  // the plot area starts at y = 44
  CHECK(top);
  // and the checker fails on broken XML
  CHECK_THROWS(testing::MiniXml::parse("<svg><text>a & b</text></svg>"));
  CHECK_THROWS(testing::MiniXml::parse("<svg><g></svg>"));
  CHECK_THROWS(testing::MiniXml::parse("<svg a=1></svg>"));
}
