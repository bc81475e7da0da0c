// Metrics: the per-step record, its JSON-lines file, the expert-load CSV and the console line.
//
// On a terminal the console shows one progress line rewritten in place; otherwise (CI, a
// scheduler's log file) one plain line per logged step, so logs stay readable.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace core {

struct StepMetrics {
  int64_t step = 0;  // 1-based: the number of optimizer steps taken
  int64_t total_steps = 0;
  double loss = 0, lm_loss = 0, mtp_loss = 0, aux_loss = 0;
  double lr = 0, grad_norm = 0;
  int64_t tokens = 0;  // tokens trained on so far (all ranks)
  double tokens_per_s = 0, step_time_s = 0;
  // where the step's time went: forward, backward (input and weight passes), and the rest
  // (reductions, clipping, AdamW, bias update)
  double forward_s = 0, backward_s = 0, optimizer_s = 0;
  double max_vio = 0;  // MaxVio of this step's global batch, averaged over MoE layers
  // Communication (multi-rank runs; the slowest rank's figure): bytes this rank sent in expert
  // all-to-all, time any communication was in flight, and time compute waited for
  // communication other than pipeline messages (exposed communication).
  std::optional<int64_t> a2a_bytes;
  std::optional<double> comm_s, exposed_comm_s;
  // Pipelines: the share of the step spent waiting for pipeline messages (the bubble).
  std::optional<double> bubble_fraction;
  int peak_activations = 0;  // micro-batch forwards in flight at once on a rank (largest)
  std::optional<double> eval_loss;
  std::optional<double> entropy_floor;
};

class MetricsWriter {
 public:
  // run_dir: where metrics.jsonl and expert_load.csv go (created). Only rank 0 writes.
  MetricsWriter(const std::string& run_dir, bool enabled, int num_experts);
  void write(const StepMetrics& m);
  // One CSV row per MoE layer: step, layer, load of every expert.
  void write_loads(int64_t step, const std::vector<std::vector<int64_t>>& loads);

 private:
  bool enabled_;
  std::ofstream jsonl_, loads_;
};

class ConsoleLog {
 public:
  // in_place: rewrite one progress line when stdout is a terminal. Off under mpirun, which gives
  // its ranks a pseudo-terminal even when the job's output goes to a log file.
  explicit ConsoleLog(bool enabled, bool in_place = true);
  void step(const StepMetrics& m, double elapsed_s);
  // Ends the in-place line before ordinary output.
  void finish_line();
  void print(const std::string& line);

 private:
  bool enabled_, tty_, open_line_ = false;
};

}  // namespace core
