// `flotilla report RUN_DIR [--out FILE]`: the HTML run report of a finished, running or killed run.
#include <fmt/format.h>

#include "core/insight/report.hpp"
#include "launch/commands.hpp"

namespace launch {

int run_report(const ReportArgs& args) {
  const core::insight::ReportInfo info = core::insight::write_report(args.run_dir, args.out);
  fmt::print(
      "report: {} ({} logged steps, {} MoE layers{})\n", info.path, info.records, info.moe_layers,
      info.truncated ? "; the incomplete last line of a running or stopped run is left out" : "");
  return 0;
}

}  // namespace launch
