// Inline SVG charts for the HTML run report: line plots over steps and expert-load heatmaps.
//
// The output is standalone, well-formed XML (every text escaped, no HTML entities), sized by a
// viewBox so it scales with the page, and needs no script or external resource. Long runs are
// decimated (min and max per pixel column for lines, averaged step bins for heatmaps), so a
// report stays a few MB at most whatever the number of steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace core::insight {

struct PlotSeries {
  std::string key;     // the metric (metrics.jsonl name), listed in the data-series attribute
  std::string label;   // legend text; the last value is appended
  std::string colour;  // "#rrggbb"
  std::vector<double> x, y;
  bool markers = false;  // a dot per point (sparse series such as eval loss)
};

struct HorizontalLine {
  std::string label;
  double y = 0;
  std::string colour;
};

struct LinePlot {
  std::string id;  // data-metric attribute: the plot's main metric (tests and scripts find it)
  std::string title;
  std::string y_label;
  std::vector<PlotSeries> series;
  std::vector<HorizontalLine> lines;
  bool log_y = false;  // only honoured when every value is positive
};

std::string render_line_plot(const LinePlot& plot);

struct Heatmap {
  int layer = 0;
  std::string title;
  std::string subtitle;
  std::vector<int64_t> steps;              // per column, the last logged step it covers
  std::vector<std::vector<double>> value;  // [column][row]: load / mean load
};

// Rows = experts, columns = logged steps, colour = load / mean load on a diverging scale
// (blue under, white at 1 = balanced, red over; 2 and above saturate).
std::string render_heatmap(const Heatmap& map);

// Text for XML content and attribute values.
std::string xml_escape(const std::string& text);
// The number format of every figure in the report (5 significant digits).
std::string format_value(double v);

}  // namespace core::insight
