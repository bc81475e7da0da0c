// The `flotilla` command line: subcommand parsing and the mapping of errors to exit codes.
#include "launch/cli.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "core/error.hpp"
#include "launch/commands.hpp"
#include "launch/environment.hpp"

namespace launch {
namespace {

// A rank that stays silent about bad input gives the reporting rank this long to print and exit:
// mpirun ends a job at the first non-zero exit code, and a silent rank exiting first could take
// the message down with the job.
constexpr auto kReporterGrace = std::chrono::seconds(3);

void wait_for_reporter() {
  // Nothing is left to save: the launcher's stop signal ends the wait at once.
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
  std::this_thread::sleep_for(kReporterGrace);
}

// Bad input found before communication: rank 0 or the rank the job agreed on says it; any other
// rank waits for that one (it is normally ended by the launcher meanwhile) and says it too only if
// it is still running, so that the message is never lost.
int refuse(const char* kind, const core::Error& e) {
  const int rank = read_launch_env().rank;
  if (rank == 0) {
    std::fprintf(stderr, "flotilla: %s: %s\n", kind, e.what());
    return 2;
  }
  if (!e.reporter()) wait_for_reporter();
  std::fprintf(stderr, "flotilla: rank %d: %s: %s\n", rank, kind, e.what());
  return 2;
}

}  // namespace

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
  t->add_option("--trace", train.trace,
                "write a Chrome trace (Perfetto, chrome://tracing) of one step of every rank");
  t->add_option("--trace-step", train.trace_step, "the step --trace records (default 2)")
      ->check(CLI::PositiveNumber);

  BenchArgs bench;
  CLI::App* b = app.add_subcommand("bench", "time training steps; prints one JSON line");
  b->add_option("--config", bench.config, "YAML config file")->check(CLI::ExistingFile);
  b->add_option("--set", bench.overrides, "override a key: --set a.b=value (repeatable)")
      ->allow_extra_args(false);
  b->add_option("--steps", bench.steps, "timed steps after warm-up")->check(CLI::PositiveNumber);
  b->add_option("--warmup", bench.warmup, "untimed warm-up steps")->check(CLI::NonNegativeNumber);
  b->add_option("--trace", bench.trace, "write a Chrome trace of the last timed step (over the link with --against-free-link)");
  b->add_flag("--against-free-link", bench.against_free_link,
              "time each step over the emulated link and again with the link suspended, "
              "alternating; adds free_link_step_time_s and link_slowdown");
  b->add_option("--a2a-ratio", bench.a2a_ratio,
                "set the emulated link after the warm-up steps (run without it) so that a step's "
                "all-to-all on it lasts R times their computation (1: DeepSeek-V3's 1:1); "
                "implies --against-free-link")
      ->check(CLI::PositiveNumber);

  ScheduleArgs sched;
  CLI::App* s = app.add_subcommand("schedule", "print a pipeline schedule's op order per rank");
  s->add_option("--kind", sched.kind, "sequential | 1f1b | dualpipe | dualpipev")->required();
  s->add_option("--pp", sched.pp, "pipeline ranks (default 1)");
  s->add_option("--chunks", sched.chunks, "micro-batches per step")->required();
  CLI::Option* sim = s->add_option("--simulate", sched.costs,
                                   "simulate; optional costs F=1,B=2,I=W,W=1,FB=3,p2p=0,A=0,fill=0")
                         ->expected(0, 1);
  s->add_flag("--comm", sched.comm, "also print the communication actions (recv, send, commit)");
  s->add_flag("--ep-overlap", sched.ep_overlap,
              "the form training runs with expert parallelism and overlap: weight passes "
              "deferred by one pair (sequential: the first two forwards and the last two "
              "backwards paired as well)");
  s->add_option("--trace", sched.trace, "write the simulated timeline as a Chrome trace");

  ReportArgs report;
  CLI::App* r = app.add_subcommand("report", "write the HTML report of a run directory");
  r->add_option("run_dir", report.run_dir, "the run's directory (holds metrics.jsonl)")->required();
  r->add_option("--out", report.out, "output file (default RUN_DIR/report.html)");

  EvalArgs eval;
  CLI::App* ev = app.add_subcommand("eval", "loss of a checkpoint or an HF model on a token file; "
                                           "prints one JSON line");
  CLI::Option* ev_ck = ev->add_option("--checkpoint", eval.checkpoint,
                                    "checkpoint directory (or a directory of them: the latest)");
  CLI::Option* ev_hf = ev->add_option("--hf", eval.hf, "HF DeepSeek-V3 model directory");
  ev_ck->excludes(ev_hf);
  ev->add_option("--data", eval.data, "token file: llm.c .bin or Megatron prefix")->required();
  ev->add_option("--seq-len", eval.seq_len, "tokens per window minus one (default: the model's)")
      ->check(CLI::PositiveNumber);
  ev->add_option("--batch", eval.batch, "windows per forward pass (default 4)")
      ->check(CLI::PositiveNumber);
  ev->add_option("--threads", eval.threads, "CPU threads (default: this process's cores)")
      ->check(CLI::NonNegativeNumber);

  ExportArgs exporting;
  CLI::App* ex = app.add_subcommand("export", "write a checkpoint as HF DeepSeek-V3 safetensors");
  ex->add_option("--checkpoint", exporting.checkpoint, "checkpoint directory (or a directory of them)")
      ->required();
  ex->add_option("--out", exporting.out, "output directory")->required();
  ex->add_option("--dtype", exporting.dtype, "bf16 (default) or fp32")
      ->check(CLI::IsMember({"bf16", "fp32"}));
  ex->add_option("--shard-mb", exporting.shard_mb, "largest safetensors shard in MiB (default 4096)")
      ->check(CLI::PositiveNumber);

  ImportArgs imp;
  CLI::App* im = app.add_subcommand("import", "turn HF DeepSeek-V3 weights into a checkpoint to train from");
  im->add_option("--hf", imp.hf, "HF DeepSeek-V3 model directory")->required();
  im->add_option("--out", imp.out, "checkpoint directory: the checkpoint is OUT/step-000000000")
      ->required();
  im->add_option("--config", imp.config, "training settings (model.* come from config.json)")
      ->check(CLI::ExistingFile);
  im->add_option("--set", imp.overrides, "override a key: --set a.b=value (repeatable)")
      ->allow_extra_args(false);

  try {
    app.parse(argc, argv);
    if (*ev && ev_ck->count() + ev_hf->count() != 1)
      throw CLI::ValidationError("eval", "give --checkpoint DIR or --hf DIR");
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (*t) return run_train(train);
    if (*b) return run_bench(bench);
    if (*r) return run_report(report);
    if (*s) {
      sched.simulate = sim->count() > 0;
      return run_schedule(sched);
    }
    if (*ev) return run_eval(eval);
    if (*ex) return run_export(exporting);
    if (*im) return run_import(imp);
  } catch (const core::PeerError&) {
    wait_for_reporter();  // the rank that found the problem prints it
    return 2;
  } catch (const core::ConfigError& e) {
    return refuse("config error", e);
  } catch (const core::DataError& e) {
    return refuse("data error", e);
  } catch (const std::exception& e) {
    // After communication has started, peers may be waiting in a collective: end the whole job.
    if (parallel::mpi_active()) core::fatal(e.what());
    std::fprintf(stderr, "flotilla: error: %s\n", e.what());
    return 1;
  }
  return 1;
}

}  // namespace launch
