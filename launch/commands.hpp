// The subcommands of the `flotilla` binary. Each returns the process exit code and throws the
// typed errors of core/error.hpp for bad input (turned into messages and exit 2 by run_cli).
#pragma once

#include <string>
#include <vector>

namespace launch {

struct TrainArgs {
  std::string config;                  // empty = built-in defaults (the tiny model)
  std::vector<std::string> overrides;  // "a.b=value"
  std::string run_dir;                 // empty = runs/<run.name>
  std::string trace;                   // Chrome trace of one step of the real run; empty = none
  int trace_step = 2;                  // the step traced (the last one when the run is shorter)
};
int run_train(const TrainArgs& args);

struct BenchArgs {
  std::string config;
  std::vector<std::string> overrides;
  int steps = 5;
  int warmup = 2;
  std::string trace;  // Chrome trace of the first timed step; empty = none
};
int run_bench(const BenchArgs& args);

struct ScheduleArgs {
  std::string kind;  // sequential | 1f1b | dualpipe | dualpipev
  int pp = 1;
  int chunks = 0;         // micro-batches per step
  bool comm = false;      // also print the recv/send/commit actions
  bool simulate = false;  // print the simulated per-rank table
  std::string costs;      // "F=1,B=2,W=1,FB=3"; empty = defaults
  std::string trace;      // Chrome trace of the simulated timeline (implies simulating)
};
int run_schedule(const ScheduleArgs& args);

struct ReportArgs {
  std::string run_dir;
  std::string out;  // empty = <run_dir>/report.html
};
int run_report(const ReportArgs& args);

}  // namespace launch
