// Pulls the inline SVGs out of an HTML report and parses each as XML (tests/common/mini_xml.hpp),
// so tests can count the plots and heatmaps and read the figures they print.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/mini_xml.hpp"

namespace testing {

struct ReportSvgs {
  std::vector<std::unique_ptr<XmlNode>> svgs;

  // The svg elements whose attribute `key` equals `value`.
  std::vector<const XmlNode*> with(const std::string& key, const std::string& value) const {
    std::vector<const XmlNode*> out;
    for (const auto& s : svgs)
      if (s->attr(key) == value) out.push_back(s.get());
    return out;
  }
};

// All text of the <text> elements of one svg, joined by newlines.
inline std::string svg_text(const XmlNode& svg) {
  std::string out;
  for (const XmlNode* t : svg.all("text")) out += t->text + "\n";
  return out;
}

// Throws std::runtime_error (from MiniXml) when an SVG is not well-formed.
inline ReportSvgs parse_report_svgs(const std::string& html) {
  ReportSvgs r;
  size_t pos = 0;
  while ((pos = html.find("<svg", pos)) != std::string::npos) {
    size_t end = html.find("</svg>", pos);
    if (end == std::string::npos) throw std::runtime_error("<svg> without </svg>");
    r.svgs.push_back(MiniXml::parse(html.substr(pos, end + 6 - pos)));
    pos = end + 6;
  }
  return r;
}

}  // namespace testing
