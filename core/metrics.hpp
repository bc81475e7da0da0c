// Metrics: the per-step record, its JSON-lines file, the expert-load CSV, the TensorBoard event
// file (run_dir/tb/) and the console line.
//
// On a terminal the console shows one progress line rewritten in place; otherwise (CI, a
// scheduler's log file) one plain line per logged step, so logs stay readable.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
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
  // CPU seconds the step's computation used (every thread of the process but the communication
  // thread; slowest rank). Unlike step_time_s not stretched when ranks share a core: with more
  // ranks than cores, a rank's own computation time.
  double compute_cpu_s = 0;
  double max_vio = 0;  // MaxVio of this step's global batch, averaged over MoE layers
  // Communication (multi-rank runs; the slowest rank's figure): bytes this rank sent in expert
  // all-to-all, time any communication was in flight, and time compute waited for
  // communication other than pipeline messages (exposed communication).
  std::optional<int64_t> a2a_bytes;
  std::optional<double> comm_s, exposed_comm_s;
  // The expert all-to-all alone: time in flight, and time compute waited for it.
  std::optional<double> a2a_s, a2a_exposed_s;
  // Per exchange the larger of the bytes a rank sent and received, summed (slowest rank): an
  // exchange lasts until its larger side has arrived, so this over the link's bandwidth is the
  // step's all-to-all time on an otherwise idle link; uneven routing puts it above a2a_bytes.
  std::optional<int64_t> a2a_paced_bytes;
  // CPU seconds the communication thread used (polling MPI, copying messages in; slowest rank):
  // what progressing the messages costs the cores the computation runs on.
  std::optional<double> comm_cpu_s;
  // Pipelines: the share of the step spent waiting for pipeline messages (the bubble).
  std::optional<double> bubble_fraction;
  int peak_activations = 0;  // micro-batch forwards in flight at once on a rank (largest)
  std::optional<double> eval_loss;
  std::optional<double> entropy_floor;
  bool skipped = false;  // non-finite loss or gradient: no update was applied
};

// Every logged field of StepMetrics: f(name, group, value) with its name in metrics.jsonl and the
// TensorBoard group its scalar goes to ("loss/lm_loss"); group "" = not a TensorBoard scalar
// (counters: the event already carries the step). value is a number or a std::optional of one
// (written only when set). A new field is one line here; the HTML report plots every numeric
// field it finds in metrics.jsonl, in the section of its group.
template <class F>
void visit_logged_fields(const StepMetrics& m, F&& f) {
  f("step", "", m.step);
  f("loss", "loss", m.loss);
  f("lm_loss", "loss", m.lm_loss);
  f("mtp_loss", "loss", m.mtp_loss);
  f("aux_loss", "moe", m.aux_loss);  // the balance terms
  f("eval_loss", "loss", m.eval_loss);
  f("entropy_floor", "loss", m.entropy_floor);
  f("lr", "optim", m.lr);
  f("grad_norm", "optim", m.grad_norm);
  f("tokens", "", m.tokens);
  f("tokens_per_s", "speed", m.tokens_per_s);
  f("step_time_s", "speed", m.step_time_s);
  f("forward_s", "speed", m.forward_s);
  f("backward_s", "speed", m.backward_s);
  f("optimizer_s", "speed", m.optimizer_s);
  f("compute_cpu_s", "speed", m.compute_cpu_s);
  f("max_vio", "moe", m.max_vio);
  f("a2a_bytes", "comm", m.a2a_bytes);
  f("comm_s", "comm", m.comm_s);
  f("exposed_comm_s", "comm", m.exposed_comm_s);
  f("a2a_s", "comm", m.a2a_s);
  f("a2a_exposed_s", "comm", m.a2a_exposed_s);
  f("a2a_paced_bytes", "comm", m.a2a_paced_bytes);
  f("comm_cpu_s", "comm", m.comm_cpu_s);
  f("bubble_fraction", "pipeline", m.bubble_fraction);
  f("peak_activations", "pipeline", m.peak_activations);
  f("skipped", "", m.skipped);
}

// CPU seconds (user + system) of every thread of this process so far: the clock of
// StepMetrics::compute_cpu_s and of bench's cpu_time_per_step_s.
double process_cpu_seconds();

namespace insight {
class EventWriter;
}

class MetricsWriter {
 public:
  // run_dir: where metrics.jsonl, expert_load.csv and tb/ go (created). Only rank 0 writes
  // (enabled). tensorboard: also write run_dir/tb/events.out.tfevents.* (run.tensorboard).
  // metrics.jsonl and expert_load.csv are opened by the first write: fresh files, or (after
  // continue_after) the existing ones.
  MetricsWriter(const std::string& run_dir, bool enabled, int num_experts, bool tensorboard = true);
  ~MetricsWriter();
  // A resumed run: keep the rows of steps <= step, append after them.
  void continue_after(int64_t step) { resume_step_ = step; }
  void write(const StepMetrics& m);
  // One CSV row per MoE layer: step, layer, load of every expert; in TensorBoard one histogram
  // per MoE layer of load / mean load ("expert_load/layer_<l>").
  void write_loads(int64_t step, const std::vector<std::vector<int64_t>>& loads);

 private:
  void open_files();
  bool enabled_, opened_ = false;
  std::string dir_;
  int experts_ = 0;
  int64_t resume_step_ = -1;
  std::ofstream jsonl_, loads_;
  std::unique_ptr<insight::EventWriter> tb_;
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
