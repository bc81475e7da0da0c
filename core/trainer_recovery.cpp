// The trainer's recovery side: its share of a checkpoint, saving and resuming (core/checkpoint/
// does the format and the protocol), the periodic-save policy of run(), and skipped steps.
#include <fmt/format.h>

#include <exception>

#include "core/checkpoint/collective.hpp"
#include "core/checkpoint/reader.hpp"
#include "core/error.hpp"
#include "core/trainer.hpp"

namespace core {

checkpoint::RankShare Trainer::checkpoint_share() {
  checkpoint::RankShare s;
  s.params = &model_->params();
  s.optimizer = opt_.get();
  s.writes = counted_ranges();
  // Biases are whole on every rank holding their layer: dp rank 0 writes them, and of a DualPipe
  // pair only the lower pipeline rank (the one whose ranges are counted).
  const parallel::Coords me = grid_->coords();
  const int pp = cfg_.parallel.pp;
  const bool upper_mirror =
      sched_.kind == parallel::ScheduleKind::dualpipe && me.pp_rank > pp - 1 - me.pp_rank;
  s.write_buffers = me.dp_rank == 0 && !upper_mirror;
  s.world = &grid_->world();
  return s;
}

checkpoint::Progress Trainer::progress() const {
  checkpoint::Progress p;
  p.step = step_;
  p.tokens = tokens_seen_;
  p.skipped_total = skipped_total_;
  p.skipped_in_row = skipped_in_row_;
  return p;
}

checkpoint::SaveResult Trainer::save_checkpoint(const std::string& root) {
  checkpoint::SaveRequest req;
  req.progress = progress();
  req.config_yaml = to_yaml(cfg_);
  req.data = {{"next_step", step_},
              {"next_sequence", step_ * cfg_.train.global_batch_size},
              {"global_batch_size", cfg_.train.global_batch_size},
              {"seq_len", cfg_.train.seq_len},
              {"kind", cfg_.data.kind},
              {"path", cfg_.data.path},
              {"note", "sequence i of step s is training window s * global_batch_size + i"}};
  const parallel::GridShape& g = grid_->shape();
  req.layout = {{"world_size", g.world},
                {"pp", g.pp},
                {"dp", g.dp},
                {"ep", g.ep},
                {"zero1", cfg_.parallel.zero1},
                {"schedule", parallel::schedule_kind_name(sched_.kind)}};
  req.keep = cfg_.checkpoint.keep;
  req.pause_s = save_pause_s_;
  checkpoint::SaveResult res = checkpoint::save_checkpoint(root, checkpoint_share(), req);
  last_saved_step_ = step_;
  return res;
}

std::vector<std::string> Trainer::resume_from(const std::string& dir) {
  std::vector<std::string> notes;
  checkpoint::Progress p;
  std::exception_ptr failure;
  try {
    checkpoint::CheckpointReader reader(dir);
    notes = checkpoint::check_resumable(reader.config(), cfg_, dir);
    checkpoint::load_share(reader, checkpoint_share());
    p = reader.manifest().progress;
  } catch (const std::exception&) {
    failure = std::current_exception();
  }
  // One rank's damaged file stops every rank alike (nobody waits in a later collective).
  checkpoint::rethrow_agreed(&grid_->world(), failure);
  step_ = p.step;
  tokens_seen_ = p.tokens;
  skipped_total_ = p.skipped_total;
  skipped_in_row_ = p.skipped_in_row;
  last_saved_step_ = step_;
  metrics_->continue_after(step_);
  return notes;
}

void Trainer::save_if_due(bool force, TrainResult& r) {
  const int64_t every = cfg_.checkpoint.every;
  if (ckpt_root_.empty() || every <= 0 || step_ == 0 || step_ == last_saved_step_) return;
  if (!force && step_ % every != 0) return;
  const checkpoint::SaveResult res = save_checkpoint(ckpt_root_);
  r.checkpoint = res.path;
  console_->print(fmt::format("checkpoint saved: {} ({:.1f} MiB in {:.2f} s)", res.path,
                              res.bytes / 1048576.0, res.seconds));
}

void Trainer::report_skipped(const StepMetrics& m) {
  const int max = cfg_.train.max_skipped_steps;
  console_->print(fmt::format(
      "step {} skipped: loss {} / gradient norm {} is not finite; no update, no bias move ({} in "
      "a row, train.max_skipped_steps = {})",
      m.step, m.loss, m.grad_norm, skipped_in_row_, max));
  if (skipped_in_row_ > max)
    FLOT_THROW(
        Error,
        "stopping: {} steps in a row (up to step {}) had a non-finite loss or gradient, more "
        "than train.max_skipped_steps = {}. The weights are those of the last good step; "
        "resume from the last checkpoint with a lower optim.lr or longer "
        "optim.warmup_steps, or check the data",
        skipped_in_row_, m.step, max);
}

}  // namespace core
