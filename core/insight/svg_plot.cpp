// Line plots and heatmaps as SVG text. Coordinates are written with one decimal; colours of the
// heatmap are quantized so that runs of equal cells in a row merge into one rectangle.
#include "core/insight/svg_plot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace core::insight {
namespace {

constexpr double kWidth = 640;
constexpr double kLeft = 80, kRight = 20, kTop = 44;
constexpr double kPlotHeight = 220;
constexpr double kCharWidth = 6.2;  // of the 11px sans-serif legend text, for layout only

std::string num(double v) {
  return fmt::format("{:.1f}", v);
}

// Axis labels of at most about 8 characters: 0.0025, 15800, 4.38e-04, 1.2e+06.
std::string tick_label(double v) {
  std::string s = fmt::format("{:.4g}", v);
  return s.size() > 8 ? fmt::format("{:.2e}", v) : s;
}

std::string svg_open(double width, double height, const std::string& attrs) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" "
      "height=\"{}\" font-family=\"sans-serif\" font-size=\"11\" {}>\n",
      num(width), num(height), num(width), num(height), attrs);
}

std::string text(double x, double y, const std::string& s, const std::string& attrs = "") {
  return fmt::format("<text x=\"{}\" y=\"{}\"{}{}>{}</text>\n", num(x), num(y),
                     attrs.empty() ? "" : " ", attrs, xml_escape(s));
}

// 1, 2, 2.5 or 5 times a power of ten near range / target.
double nice_step(double range, int target) {
  double raw = range / target;
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

std::vector<double> ticks(double lo, double hi, int target) {
  std::vector<double> t;
  if (!(hi > lo)) return {lo};
  double step = nice_step(hi - lo, target);
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step; k += 1)
    t.push_back(k * step == 0 ? 0.0 : k * step);  // no "-0"
  return t;
}

// Indices of the points to draw: all of them, or the first minimum and maximum of each of
// `bins` x-intervals (in x order), so that spikes survive the thinning.
std::vector<size_t> decimate(const std::vector<double>& x, const std::vector<double>& y,
                             size_t bins) {
  std::vector<size_t> keep;
  if (x.size() <= 2 * bins) {
    for (size_t i = 0; i < x.size(); ++i) keep.push_back(i);
    return keep;
  }
  const double lo = x.front(), span = std::max(1e-300, x.back() - x.front());
  size_t bin_start = 0;
  auto flush = [&](size_t begin, size_t end) {
    if (begin >= end) return;
    size_t mn = begin, mx = begin;
    for (size_t i = begin; i < end; ++i) {
      if (y[i] < y[mn]) mn = i;
      if (y[i] > y[mx]) mx = i;
    }
    keep.push_back(std::min(mn, mx));
    if (mn != mx) keep.push_back(std::max(mn, mx));
  };
  size_t current = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    size_t b = std::min(bins - 1, static_cast<size_t>((x[i] - lo) / span * bins));
    if (b != current) {
      flush(bin_start, i);
      bin_start = i;
      current = b;
    }
  }
  flush(bin_start, x.size());
  if (keep.back() != x.size() - 1) keep.push_back(x.size() - 1);  // the last value is shown
  return keep;
}

struct Scale {
  double lo, hi, px_lo, px_hi;
  bool log;
  double operator()(double v) const {
    double t = log ? std::log10(v) : v;
    return px_lo + (t - lo) / (hi - lo) * (px_hi - px_lo);
  }
};

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters other than tab and newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n') out += c;
    }
  }
  return out;
}

std::string format_value(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  return fmt::format("{:.5g}", v);
}

std::string render_line_plot(const LinePlot& plot) {
  const double x0 = kLeft, x1 = kWidth - kRight, y0 = kTop, y1 = kTop + kPlotHeight;

  // Data ranges over every finite value.
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin;
  double ymin = xmin, ymax = -xmin;
  bool all_positive = true;
  auto see_y = [&](double v) {
    if (!std::isfinite(v)) return;
    ymin = std::min(ymin, v);
    ymax = std::max(ymax, v);
    all_positive = all_positive && v > 0;
  };
  for (const auto& s : plot.series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      see_y(s.y[i]);
    }
  for (const auto& h : plot.lines) see_y(h.y);
  const bool has_data = xmin <= xmax && ymin <= ymax;
  if (!has_data) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (xmax == xmin) xmin -= 1, xmax += 1;
  const bool log_y = plot.log_y && all_positive && has_data && ymax / ymin > 100;
  double ylo = log_y ? std::log10(ymin) : ymin, yhi = log_y ? std::log10(ymax) : ymax;
  if (yhi == ylo) {
    double pad = ylo == 0 ? 1 : std::fabs(ylo) * 0.1;
    ylo -= pad, yhi += pad;
  } else {
    double pad = (yhi - ylo) * 0.05;
    ylo -= pad, yhi += pad;
  }
  const Scale sx{xmin, xmax, x0, x1, false}, sy{ylo, yhi, y1, y0, log_y};

  // Legend layout first: its rows set the height.
  std::vector<std::string> entries;
  for (const auto& s : plot.series) {
    std::string e = s.label;
    if (!s.y.empty()) e += " · last " + format_value(s.y.back());
    entries.push_back(e);
  }
  for (const auto& h : plot.lines) entries.push_back(h.label + " " + format_value(h.y));
  std::vector<std::pair<double, double>> at;  // legend entry positions
  double lx = x0, ly = y1 + 50;
  for (const auto& e : entries) {
    double w = 26 + kCharWidth * e.size() + 16;
    if (lx + w > kWidth - kRight && lx > x0) lx = x0, ly += 16;
    at.emplace_back(lx, ly);
    lx += w;
  }
  const double height = (entries.empty() ? y1 + 36 : ly + 10);

  std::string keys;
  for (const auto& s : plot.series) keys += (keys.empty() ? "" : " ") + s.key;
  std::string o = svg_open(kWidth, height,
                           fmt::format("class=\"plot\" data-metric=\"{}\" data-series=\"{}\"",
                                       xml_escape(plot.id), xml_escape(keys)));
  o += fmt::format("<title>{}</title>\n", xml_escape(plot.title));
  o += text(x0, 20, plot.title, "font-size=\"14\" font-weight=\"bold\"");
  o += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffffff\" "
      "stroke=\"#999999\"/>\n",
      num(x0), num(y0), num(x1 - x0), num(y1 - y0));

  // Grid and tick labels.
  std::vector<double> yt;
  if (log_y) {
    for (double k = std::ceil(ylo); k <= yhi; k += 1) yt.push_back(k);
  } else {
    yt = ticks(ylo, yhi, 5);
  }
  for (double t : yt) {
    double v = log_y ? std::pow(10.0, t) : t;
    double py = sy(v);
    o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#e4e4e4\"/>\n",
                     num(x0), num(py), num(x1), num(py));
    o += text(x0 - 6, py + 4, tick_label(v), "text-anchor=\"end\" fill=\"#444444\"");
  }
  std::vector<double> xt = ticks(xmin, xmax, 6);
  for (double t : xt) {
    if (t != std::round(t)) continue;  // steps are integers
    double px = sx(t);
    o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#e4e4e4\"/>\n",
                     num(px), num(y0), num(px), num(y1));
    o += text(px, y1 + 15, fmt::format("{}", static_cast<int64_t>(t)),
              "text-anchor=\"middle\" fill=\"#444444\"");
  }
  o += text((x0 + x1) / 2, y1 + 31, "step", "text-anchor=\"middle\" fill=\"#444444\"");
  o += text(16, (y0 + y1) / 2, plot.y_label + (log_y ? " (log scale)" : ""),
            fmt::format("text-anchor=\"middle\" fill=\"#444444\" transform=\"rotate(-90 16 {})\"",
                        num((y0 + y1) / 2)));
  if (!has_data) o += text((x0 + x1) / 2, (y0 + y1) / 2, "no data", "text-anchor=\"middle\"");

  for (const auto& h : plot.lines) {
    double py = sy(h.y);
    o += fmt::format(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" "
        "stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n",
        num(x0), num(py), num(x1), num(py), h.colour);
  }
  for (const auto& s : plot.series) {
    std::string pts;
    for (size_t i : decimate(s.x, s.y, static_cast<size_t>(x1 - x0))) {
      if (!std::isfinite(s.y[i]) || (log_y && s.y[i] <= 0)) continue;
      pts += fmt::format("{}{},{}", pts.empty() ? "" : " ", num(sx(s.x[i])), num(sy(s.y[i])));
    }
    if (!pts.empty())
      o += fmt::format(
          "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\" "
          "stroke-linejoin=\"round\" points=\"{}\"/>\n",
          s.colour, pts);
    if (s.markers && s.x.size() <= 400)
      for (size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.y[i]))
          o += fmt::format(
              "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"><title>step {}: {}"
              "</title></circle>\n",
              num(sx(s.x[i])), num(sy(s.y[i])), s.colour, format_value(s.x[i]),
              format_value(s.y[i]));
  }

  // Legend.
  for (size_t i = 0; i < entries.size(); ++i) {
    const bool is_line = i >= plot.series.size();
    const std::string& colour =
        is_line ? plot.lines[i - plot.series.size()].colour : plot.series[i].colour;
    auto [ex, ey] = at[i];
    o += fmt::format(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" "
        "stroke-width=\"2.5\"{}/>\n",
        num(ex), num(ey - 4), num(ex + 20), num(ey - 4), colour,
        is_line ? " stroke-dasharray=\"6 4\"" : "");
    o += text(ex + 26, ey, entries[i]);
  }
  o += "</svg>\n";
  return o;
}

namespace {

constexpr int kColourLevels = 41;  // quantized so equal neighbours merge

// Diverging colour of a relative load: blue (0) - near white (1) - red (>= 2).
std::string load_colour(int level) {
  const double t = static_cast<double>(level) / (kColourLevels - 1) * 2 - 1;  // [-1, 1]
  const double mid[3] = {247, 247, 247}, lo[3] = {33, 102, 172}, hi[3] = {178, 24, 43};
  const double* end = t < 0 ? lo : hi;
  const double a = std::fabs(t);
  int c[3];
  for (int k = 0; k < 3; ++k) c[k] = static_cast<int>(std::lround(mid[k] + (end[k] - mid[k]) * a));
  return fmt::format("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
}

int load_level(double r) {
  if (!std::isfinite(r)) r = 2;
  double t = std::clamp(r - 1, -1.0, 1.0);
  return static_cast<int>(std::lround((t + 1) / 2 * (kColourLevels - 1)));
}

}  // namespace

std::string render_heatmap(const Heatmap& map) {
  const size_t cols = map.value.size();
  const size_t rows = cols ? map.value[0].size() : 0;
  const double x0 = kLeft, x1 = kWidth - kRight, y0 = kTop + 14;
  const double cell_h = rows ? std::clamp(320.0 / rows, 2.0, 18.0) : 18;
  const double y1 = y0 + cell_h * std::max<size_t>(rows, 1);
  const double cell_w = cols ? (x1 - x0) / cols : x1 - x0;
  const double height = y1 + 78;

  std::string o = svg_open(
      kWidth, height,
      fmt::format("class=\"heatmap\" data-layer=\"{}\" data-experts=\"{}\"", map.layer, rows));
  o += fmt::format("<title>{}</title>\n", xml_escape(map.title));
  o += text(x0, 20, map.title, "font-size=\"14\" font-weight=\"bold\"");
  o += text(x0, 38, map.subtitle, "fill=\"#444444\"");
  for (size_t r = 0; r < rows; ++r) {
    const double y = y0 + r * cell_h;
    o += fmt::format("<g><title>expert {}</title>", r);
    size_t c = 0;
    while (c < cols) {
      const int level = load_level(map.value[c][r]);
      size_t end = c + 1;
      while (end < cols && load_level(map.value[end][r]) == level) ++end;
      // A hair wider than the cell so that no seams show between neighbours.
      o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
                       num(x0 + c * cell_w), num(y), num((end - c) * cell_w + 0.3),
                       num(cell_h + 0.3), load_colour(level));
      c = end;
    }
    o += "</g>\n";
  }
  o += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
      "stroke=\"#999999\"/>\n",
      num(x0), num(y0), num(x1 - x0), num(y1 - y0));
  // Expert labels: every row when they fit, else every k-th.
  const size_t every = std::max<size_t>(1, static_cast<size_t>(std::ceil(11.0 / cell_h)));
  for (size_t r = 0; r < rows; r += every)
    o += text(x0 - 6, y0 + (r + 0.5) * cell_h + 4, fmt::format("e{}", r),
              "text-anchor=\"end\" fill=\"#444444\"");
  o += text(16, (y0 + y1) / 2, "expert",
            fmt::format("text-anchor=\"middle\" fill=\"#444444\" transform=\"rotate(-90 16 {})\"",
                        num((y0 + y1) / 2)));
  // Step ticks at column centres.
  if (cols > 0) {
    const double first = static_cast<double>(map.steps.front());
    const double last = static_cast<double>(map.steps.back());
    for (double t : ticks(first, last, 6)) {
      if (t != std::round(t)) continue;
      // The column holding step t (columns may average several logged steps).
      size_t c = static_cast<size_t>(
          std::lower_bound(map.steps.begin(), map.steps.end(), static_cast<int64_t>(t)) -
          map.steps.begin());
      if (c >= cols) continue;
      double px = x0 + (c + 0.5) * cell_w;
      o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444444\"/>\n",
                       num(px), num(y1), num(px), num(y1 + 4));
      o += text(px, y1 + 16, fmt::format("{}", static_cast<int64_t>(t)),
                "text-anchor=\"middle\" fill=\"#444444\"");
    }
  }
  o += text((x0 + x1) / 2, y1 + 31, "step", "text-anchor=\"middle\" fill=\"#444444\"");
  // Colour scale.
  const double sy = y1 + 46, sw = 240, sx = x0;
  for (int k = 0; k < kColourLevels; ++k)
    o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"10\" fill=\"{}\"/>",
                     num(sx + sw * k / kColourLevels), num(sy), num(sw / kColourLevels + 0.3),
                     load_colour(k));
  o += "\n";
  for (double v : {0.0, 0.5, 1.0, 1.5, 2.0})
    o += text(sx + sw * v / 2, sy + 22, v == 2.0 ? "≥2" : fmt::format("{:g}", v),
              "text-anchor=\"middle\" fill=\"#444444\"");
  o += text(sx + sw + 12, sy + 9, "load / mean load (1 = balanced)", "fill=\"#444444\"");
  o += "</svg>\n";
  return o;
}

}  // namespace core::insight
