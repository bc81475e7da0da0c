// The HTML run report: one self-contained file (inline CSS and SVG, no script, nothing fetched)
// with the loss curves, learning rate, gradient norm, throughput, MaxVio and every other numeric
// metric over steps, and one expert-load heatmap per MoE layer. Built from the files a run
// writes (metrics.jsonl, expert_load.csv, config.yaml), so it works on a run that is still going
// or was killed.
#pragma once

#include <cstddef>
#include <string>

#include "core/insight/run_files.hpp"

namespace core::insight {

struct ReportInput {
  std::string title;  // the run directory's name
  RunMetrics metrics;
  ExpertLoads loads;
  std::string config_yaml;  // the run's resolved config; "" when unknown
};

// Reads run_dir's files. Throws DataError when run_dir has no metrics.jsonl.
ReportInput read_run(const std::string& run_dir);

std::string render_report(const ReportInput& in);

struct ReportInfo {
  std::string path;
  size_t records = 0;  // logged steps in the report
  size_t moe_layers = 0;
  bool truncated = false;  // an incomplete last line was skipped
};

// read_run + render_report into out_path ("" = run_dir/report.html). Throws DataError.
ReportInfo write_report(const std::string& run_dir, const std::string& out_path = "");

}  // namespace core::insight
