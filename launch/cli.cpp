// The `flotilla` command line: subcommand parsing and the mapping of errors to exit codes.
#include "launch/cli.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>

#include "core/error.hpp"
#include "launch/commands.hpp"

namespace launch {

int run_cli(int argc, char** argv) {
  CLI::App app{"flotilla: pretraining of DeepSeek-V3-style mixture-of-experts models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("flotilla ") + FLOTILLA_VERSION);

  TrainArgs train;
  CLI::App* t = app.add_subcommand("train", "train a model (built-in tiny config without --config)");
  t->add_option("--config", train.config, "YAML config file")->check(CLI::ExistingFile);
  t->add_option("--set", train.overrides, "override a key: --set a.b=value (repeatable)")
      ->allow_extra_args(false);
  t->add_option("--run-dir", train.run_dir, "output directory (default runs/<run.name>)");

  BenchArgs bench;
  CLI::App* b = app.add_subcommand("bench", "time training steps; prints one JSON line");
  b->add_option("--config", bench.config, "YAML config file")->check(CLI::ExistingFile);
  b->add_option("--set", bench.overrides, "override a key: --set a.b=value (repeatable)")
      ->allow_extra_args(false);
  b->add_option("--steps", bench.steps, "timed steps after warm-up")->check(CLI::PositiveNumber);
  b->add_option("--warmup", bench.warmup, "untimed warm-up steps")->check(CLI::NonNegativeNumber);

  ReportArgs report;
  CLI::App* r = app.add_subcommand("report", "write the HTML report of a run directory");
  r->add_option("run_dir", report.run_dir, "the run's directory (holds metrics.jsonl)")->required();
  r->add_option("--out", report.out, "output file (default RUN_DIR/report.html)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (*t) return run_train(train);
    if (*b) return run_bench(bench);
    if (*r) return run_report(report);
  } catch (const core::ConfigError& e) {
    std::fprintf(stderr, "flotilla: config error: %s\n", e.what());
    return 2;
  } catch (const core::DataError& e) {
    std::fprintf(stderr, "flotilla: data error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flotilla: error: %s\n", e.what());
    return 1;
  }
  return 1;
}

}  // namespace launch
