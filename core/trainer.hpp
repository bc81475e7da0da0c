// Trainer: the optimizer-step loop of one rank. Micro-batches run through the model (forward,
// input backward, weight backward), gradients are reduced over data-parallel ranks and clipped,
// AdamW updates the parameters, and the aux-loss-free rule moves the expert biases with loads
// counted over the whole global batch. Metrics, evaluation and the console line live here too.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/context.hpp"
#include "core/data/dataset.hpp"
#include "core/metrics.hpp"
#include "core/model.hpp"
#include "optim/lr_schedule.hpp"

namespace core {

struct TrainResult {
  int64_t steps = 0;
  bool interrupted = false;
  double initial_loss = 0;  // lm loss of the first step
  double final_loss = 0;    // lm loss of the last step
  double final_eval_loss = -1;
  double entropy_floor = -1;
  double ln_vocab = 0;
};

class Trainer {
 public:
  // Throws ConfigError for settings this build cannot run yet, DataError for bad data.
  // run_dir empty: no files are written (tests, bench). stop: set (by a signal handler) to end
  // the run cleanly after the current step.
  Trainer(const Config& cfg, Context& ctx, const std::string& run_dir, bool log,
          const std::atomic<bool>* stop = nullptr);
  ~Trainer();

  // One optimizer step over the global batch; returns its metrics (step is 1-based).
  StepMetrics step();
  // Mean main-head loss over train.eval_batches validation micro-batches.
  double evaluate();
  // The whole run: steps, evaluation, logging, a final summary line.
  TrainResult run();

  Model& model() { return *model_; }
  const data::Dataset& dataset() const { return *dataset_; }
  int64_t tokens_per_step() const;

 private:
  void apply_optimizer(double lr, double clip);
  Config cfg_;
  Context& ctx_;
  std::string run_dir_;
  bool log_;
  const std::atomic<bool>* stop_;
  std::unique_ptr<data::Dataset> dataset_;
  std::unique_ptr<data::Loader> loader_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<ConsoleLog> console_;
  optim::LrSchedule schedule_;
  int64_t step_ = 0;  // optimizer steps taken
  int64_t tokens_seen_ = 0;
  std::vector<std::vector<int64_t>> last_loads_;
};

// Refuses, with a ConfigError naming the key, what the config allows but this build cannot run
// yet (other precisions, pipeline / expert parallelism, CUDA, resuming from a checkpoint).
void check_supported(const Config& cfg, int world_size);

}  // namespace core
