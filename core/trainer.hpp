// Trainer: the optimizer-step loop of one rank, the same code for one process and for any
// parallel layout.
//
// The world is split into the process grid (parallel::Grid); this rank builds the pipeline
// stages its schedule places on it (the whole model when pp = 1) and runs the schedule with the
// executor (F, B, I, W, overlapped pairs; a single process runs 1F1B over one stage, or the
// sequential pairs schedule under expert parallelism). Gradient buckets are reduced over the
// data-parallel groups while the backward pass runs (parallel::GradSync), DualPipe's mirrored
// stage copies and 1F1B's two embedding copies have their gradients summed, the global norm is
// clipped, AdamW updates this rank's share (ZeRO-1 shard or everything) and the shards are
// gathered, and the aux-loss-free rule moves the expert biases with loads counted over the whole
// global batch. Losses, loads and timings are reduced over the world; rank 0 logs.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "core/checkpoint/manifest.hpp"
#include "core/checkpoint/share.hpp"
#include "core/checkpoint/writer.hpp"
#include "core/config.hpp"
#include "core/context.hpp"
#include "core/data/dataset.hpp"
#include "core/memory_plan.hpp"
#include "core/metrics.hpp"
#include "core/model.hpp"
#include "optim/lr_schedule.hpp"
#include "optim/sharded_adamw.hpp"
#include "parallel/executor.hpp"
#include "parallel/grad_sync.hpp"
#include "parallel/grid.hpp"
#include "parallel/schedule.hpp"

namespace core {

struct TrainResult {
  int64_t steps = 0;
  bool interrupted = false;
  double initial_loss = 0;  // lm loss of the first step
  double final_loss = 0;    // lm loss of the last step
  double final_eval_loss = -1;
  double entropy_floor = -1;
  double ln_vocab = 0;
  std::string checkpoint;   // the last checkpoint this run saved ("" = none)
};

class Trainer {
 public:
  // Throws ConfigError for settings this build cannot run yet, DataError for bad data (both
  // before any collective). Then splits ctx.comm (a single-process world when null) into the
  // grid: collective. run_dir empty: no files are written (tests, bench). stop: set (by a
  // signal handler) to end the run cleanly after the current step.
  Trainer(const Config& cfg, Context& ctx, const std::string& run_dir, bool log,
          const std::atomic<bool>* stop = nullptr);
  ~Trainer();

  // One optimizer step over the global batch; returns its metrics (step is 1-based). A step
  // whose loss or gradient norm is not finite is skipped: no update, no bias move (m.skipped);
  // run() stops after train.max_skipped_steps of them in a row.
  StepMetrics step();
  // Mean main-head loss over the validation set (train.eval_batches micro-batches in all,
  // shared among the data-parallel ranks).
  double evaluate();
  // The whole run: steps, evaluation, logging, a final summary line.
  TrainResult run();

  Model& model() { return *model_; }
  const Context& context() const { return ctx_; }
  const data::Dataset& dataset() const { return *dataset_; }
  parallel::Grid& grid() { return *grid_; }
  const parallel::Schedule& schedule() const { return sched_; }
  const std::vector<StagePlan>& stage_plans() const { return plans_; }
  const optim::ShardedAdamW& optimizer() const { return *opt_; }
  // The pre-flight memory plan of this rank (checked against the node's memory before anything
  // was allocated), and of each pipeline rank (index pp_rank; data-parallel peers plan alike).
  const MemoryPlan& memory_plan() const { return memory_plan_; }
  // The node memory the plan was checked against (bytes; <= 0: unknown, not checked).
  int64_t memory_available() const { return memory_available_; }
  std::vector<MemoryPlan> memory_plans() const;
  // What this rank holds now, measured: the same fields as the plan.
  MemoryPlan memory_used();
  int64_t tokens_per_step() const;
  // ---- checkpoints and recovery (core/trainer_recovery.cpp, core/checkpoint/) ----
  // Where run() saves checkpoints: checkpoint.dir, else <run dir>/checkpoints; "" (no run
  // directory, no checkpoint.dir) = nowhere.
  const std::string& checkpoint_root() const { return ckpt_root_; }
  // This rank's share of the training state for a checkpoint, keyed by global names.
  checkpoint::RankShare checkpoint_share();
  // Collective: saves the current state under `root` as step-<step>/ (checkpoint.keep applies).
  checkpoint::SaveResult save_checkpoint(const std::string& root);
  // Collective: loads a checkpoint written by any layout and continues from its step (metrics
  // files continue too). Returns notes on settings that differ from the checkpoint's.
  std::vector<std::string> resume_from(const std::string& dir);
  checkpoint::Progress progress() const;
  // Test hook: seconds each rank pauses inside every save (launch/: FLOTILLA_TEST_SAVE_PAUSE_S).
  void set_save_pause(double seconds) { save_pause_s_ = seconds; }

  // Writes a Chrome trace of step `step` (1-based; run() and step() check it) to `path`: every
  // rank's compute, waits and communication in flight, gathered on rank 0. Collective.
  void trace_step(int64_t step, const std::string& path) {
    trace_at_ = step;
    trace_path_ = path;
  }
  const parallel::StepRun& last_run() const { return last_run_; }

 private:
  void mirror_sums();
  // The flat ranges whose elements this rank counts in global statistics and writes to
  // checkpoints: every element once over the world.
  std::vector<ParamStore::Range> counted_ranges() const;
  double global_grad_norm();
  // run()'s checkpoint policy after a step: every checkpoint.every steps, or `force` (the end of
  // the run, a stop by signal) unless this step is saved already.
  void save_if_due(bool force, TrainResult& r);
  // Reports a skipped step; throws once more than train.max_skipped_steps ran in a row.
  void report_skipped(const StepMetrics& m);
  double sum_over_world(double v);
  Config cfg_;
  Context& ctx_;
  std::string run_dir_;
  bool log_;
  const std::atomic<bool>* stop_;
  std::unique_ptr<parallel::Communicator> own_world_;
  std::unique_ptr<parallel::Grid> grid_;
  parallel::Schedule sched_;
  std::vector<StagePlan> plans_;
  MemoryPlan memory_plan_;
  int64_t memory_available_ = 0;
  std::unique_ptr<data::Dataset> dataset_;
  std::unique_ptr<data::Loader> loader_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<parallel::Executor> exec_;
  std::unique_ptr<parallel::GradSync> sync_;
  std::unique_ptr<optim::ShardedAdamW> opt_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<ConsoleLog> console_;
  optim::LrSchedule schedule_;
  std::vector<data::MicroBatch> batches_;  // this step's micro-batches, by global index
  std::vector<int64_t> batch_step_;        // the step each cached micro-batch belongs to
  bool tied_embedding_ = false;            // 1F1B: first and last stage hold the embedding
  int64_t trace_at_ = -1;
  std::string trace_path_;
  parallel::StepRun last_run_;
  parallel::CommStats last_stats_;
  int64_t step_ = 0;  // optimizer steps taken
  int64_t tokens_seen_ = 0;
  int64_t skipped_total_ = 0, skipped_in_row_ = 0;  // steps skipped for non-finite values
  std::string ckpt_root_;
  int64_t last_saved_step_ = -1;
  double save_pause_s_ = 0;
  std::vector<std::vector<int64_t>> last_loads_;
};

// Refuses, with a ConfigError naming the key, what the config allows but this build cannot run
// yet (CUDA).
void check_supported(const Config& cfg, int world_size);

// The schedule a config runs on this layout: parallel.schedule when pp > 1; with pp = 1 the
// sequential pairs when experts are exchanged (ep > 1), else plain 1F1B over one stage.
parallel::ScheduleKind schedule_kind(const Config& cfg);
// Micro-batches per pipeline per step (parallel.chunks, or the batch sizes' quotient).
int chunks_per_step(const Config& cfg, int dp);

}  // namespace core
