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
  std::string trace;  // Chrome trace of the last timed (link) step; empty = none
  // Each timed step is a pair: one over the emulated link (parallel.link), one with the link
  // suspended, in alternating order, so that both see the same machine (docs/performance.md).
  bool against_free_link = false;
  // > 0: the link's bandwidth is set after the warm-up steps (run without the link) so that a
  // step's all-to-all on it lasts this many times the computation they measured; implies
  // against_free_link.
  double a2a_ratio = 0;
};
int run_bench(const BenchArgs& args);

struct ScheduleArgs {
  std::string kind;  // sequential | 1f1b | dualpipe | dualpipev
  int pp = 1;
  int chunks = 0;         // micro-batches per step
  bool comm = false;      // also print the recv/send/commit actions
  bool ep_overlap = false; // the form expert-parallel overlap runs (parallel::make_schedule)
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

// flotilla eval: a checkpoint's or an HF model's loss on a token file (one process).
struct EvalArgs {
  std::string checkpoint;  // a checkpoint, or a directory of them (the latest)
  std::string hf;          // or an HF DeepSeek-V3 directory
  std::string data;        // llm.c .bin or Megatron prefix
  int seq_len = 0;         // 0 = the checkpoint's train.seq_len / config.json's max_position_embeddings
  int batch = 4;           // windows per forward pass
  int threads = 0;         // 0 = this process's cores
};
int run_eval(const EvalArgs& args);

// flotilla export: a checkpoint as HF DeepSeek-V3 safetensors.
struct ExportArgs {
  std::string checkpoint;
  std::string out;
  std::string dtype = "bf16";  // bf16 | fp32
  int64_t shard_mb = 4096;     // largest shard
};
int run_export(const ExportArgs& args);

// flotilla import: HF DeepSeek-V3 weights as a step-0 checkpoint to train from.
struct ImportArgs {
  std::string hf;
  std::string out;                     // checkpoint directory root: OUT/step-000000000/
  std::string config;                  // training settings (model.* come from config.json)
  std::vector<std::string> overrides;
};
int run_import(const ImportArgs& args);

}  // namespace launch
