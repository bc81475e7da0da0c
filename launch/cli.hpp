// The `flotilla` command line: subcommands train, bench, report (and later schedule, eval, export).
#pragma once

namespace launch {

// Parses argv, runs the subcommand, and returns the process exit code: 0 on success, 2 for bad
// input (config, data, usage), 3 for a missed train.expect threshold, 130 for a run stopped by a
// signal, 1 for other failures.
int run_cli(int argc, char** argv);

}  // namespace launch
