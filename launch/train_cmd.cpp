// `flotilla train`: config -> validation -> context -> resume decision -> trainer, with a
// checkpoint and a clean stop on SIGINT / SIGTERM (launch/signals.hpp), the HTML report at the
// end of every run, and the pass/fail expectations of train.expect.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "core/checkpoint/manifest.hpp"
#include "core/checkpoint/resume.hpp"
#include "core/config.hpp"
#include "core/context.hpp"
#include "core/error.hpp"
#include "core/insight/report.hpp"
#include "core/stage_plan.hpp"
#include "core/trainer.hpp"
#include "launch/commands.hpp"
#include "launch/environment.hpp"
#include "launch/signals.hpp"
#include "parallel/communicator.hpp"

namespace launch {
namespace {

// A run directory that already holds a run's files keeps them when a new run starts there
// (not a resumed one): they move to previous/<time>/ instead of being overwritten, with the
// default checkpoint directory.
std::string archive_previous_run(const std::string& run_dir) {
  namespace fs = std::filesystem;
  const char* files[] = {"config.yaml", "metrics.jsonl", "expert_load.csv", "tb", "report.html",
                         "checkpoints"};
  bool any = false;
  for (const char* f : files) any = any || fs::exists(fs::path(run_dir) / f);
  if (!any) return "";
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  fs::path dest = fs::path(run_dir) / "previous" / stamp;
  for (int i = 1; fs::exists(dest); ++i) dest = fs::path(run_dir) / "previous" / fmt::format("{}-{}", stamp, i);
  fs::create_directories(dest);
  for (const char* f : files)
    if (fs::exists(fs::path(run_dir) / f)) fs::rename(fs::path(run_dir) / f, dest / f);
  return dest.string();
}

// Share of the gap between the uniform loss ln V and the entropy floor that `loss` closes, in
// percent: the figure of the final line and of train.expect.gap_closed_above.
double gap_closed_percent(const core::TrainResult& r, double loss) {
  return 100.0 * (r.ln_vocab - loss) / (r.ln_vocab - r.entropy_floor);
}

// Refuses expectations that cannot be checked, before training starts.
void check_expectations_possible(const core::Config& cfg, double entropy_floor, bool lead) {
  const double gap = cfg.train.expect.gap_closed_above;
  if (gap > 0 && entropy_floor < 0)
    FLOT_THROW(core::ConfigError,
               "train.expect.gap_closed_above = {}: the entropy floor of this data is unknown "
               "(data.kind = {}; only synthetic data has one), so the gap cannot be measured; "
               "use train.expect.eval_loss_below instead",
               gap, cfg.data.kind);
  if (lead && gap > 0 && gap < 1)
    fmt::print("note: train.expect.gap_closed_above = {} is in percent ({}%); write {} for {}%\n",
               gap, gap, gap * 100, gap * 100);
}

// Prints one line per expectation; returns false when the final evaluation missed one.
bool check_expectations(const core::Config& cfg, const core::TrainResult& r) {
  const core::ExpectConfig& e = cfg.train.expect;
  bool ok = true;
  if (e.eval_loss_below > 0) {
    const bool met = r.final_eval_loss >= 0 && r.final_eval_loss < e.eval_loss_below;
    ok = ok && met;
    fmt::print("expectation {}: eval loss {:.4f} {} {:g} (train.expect.eval_loss_below)\n",
               met ? "met" : "missed", r.final_eval_loss, met ? "<" : "is not below",
               e.eval_loss_below);
  }
  if (e.gap_closed_above > 0) {
    const double closed = gap_closed_percent(r, r.final_eval_loss);
    const bool met = r.final_eval_loss >= 0 && closed > e.gap_closed_above;
    ok = ok && met;
    fmt::print("expectation {}: gap closed {:.1f}% {} {:g}% (train.expect.gap_closed_above)\n",
               met ? "met" : "missed", closed, met ? ">" : "is not above", e.gap_closed_above);
  }
  return ok;
}

// The report never changes how a run ends: a failure to write it is a warning.
void write_run_report(const std::string& run_dir) {
  try {
    auto info = core::insight::write_report(run_dir);
    fmt::print("report: {}\n", info.path);
  } catch (const std::exception& e) {
    fmt::print(stderr, "warning: no report written: {}\n", e.what());
  }
  std::fflush(stdout);
}


// Before the first step: what each pipeline rank will hold (data-parallel peers hold the same),
// and the memory the node offers.
void print_memory_plan(const core::Config& cfg, core::Trainer& trainer) {
  const std::vector<core::MemoryPlan> plans = trainer.memory_plans();
  const bool shard = cfg.parallel.zero1 && trainer.grid().shape().dp > 1;
  for (size_t r = 0; r < plans.size(); ++r)
    fmt::print("memory plan{}: {}{}\n", plans.size() > 1 ? fmt::format(" (pp rank {})", r) : std::string(),
               core::describe_memory(plans[r]), shard ? " (optimizer: a ZeRO-1 shard)" : "");
  const int64_t avail = trainer.memory_available();  // what the plan was checked against
  if (avail > 0)
    fmt::print("memory available: {:.2f} GiB on this node{} for {} rank(s) here\n", avail / 1073741824.0,
               cfg.runtime.memory_limit_gb > 0 ? " (runtime.memory_limit_gb)" : "",
               trainer.context().local_size);
}

// After the run: rank 0's measured memory beside its plan.
void print_memory_used(core::Trainer& trainer) {
  const core::MemoryPlan used = trainer.memory_used(), plan = trainer.memory_plan();
  fmt::print("memory measured: {}; planned {:.1f} MiB ({:+.1f}%); peak resident {:.1f} MiB\n",
             core::describe_memory(used), plan.total() / 1048576.0,
             100.0 * (plan.total() - used.total()) / std::max<int64_t>(1, used.total()),
             core::peak_resident_bytes() / 1048576.0);
}

}  // namespace

int train_body(const TrainArgs& args, const core::Config& cfg, Runtime& rt);

int run_train(const TrainArgs& args) {
  core::Config cfg = core::load_config(args.config, args.overrides);
  auto rt = start_runtime(cfg);
  return guarded(*rt, [&] { return train_body(args, cfg, *rt); });
}

int train_body(const TrainArgs& args, const core::Config& cfg, Runtime& rt) {
  core::Context& ctx = rt.ctx;
  const bool lead = ctx.rank == 0;  // only rank 0 prints and writes the run's files

  std::string run_dir = args.run_dir.empty() ? "runs/" + cfg.run.name : args.run_dir;
  const std::string resolved = core::to_yaml(cfg);
  // The same rule as core::Trainer::checkpoint_root().
  const std::string ckpt_root =
      cfg.checkpoint.dir.empty() ? run_dir + "/checkpoints" : cfg.checkpoint.dir;
  const std::string resume = core::checkpoint::resolve_resume(cfg.train.resume, ckpt_root, ctx.comm);
  if (resume.empty() && !cfg.checkpoint.dir.empty() &&
      !core::checkpoint::list_checkpoints(ckpt_root).empty())
    FLOT_THROW(core::ConfigError,
               "checkpoint.dir {} already holds checkpoints of another run (latest {}) and "
               "train.resume = never would mix a new run's checkpoints with them; resume it "
               "(train.resume=auto), or choose an empty checkpoint.dir",
               ckpt_root, core::checkpoint::list_checkpoints(ckpt_root).back().path);
  if (lead) {
    std::filesystem::create_directories(run_dir);
    if (resume.empty()) {
      std::string archived = archive_previous_run(run_dir);
      if (!archived.empty()) fmt::print("previous run's files moved to {}\n", archived);
    }
    std::ofstream out(run_dir + "/config.yaml");
    out << resolved;
    if (!out) FLOT_THROW(core::DataError, "cannot write {}/config.yaml", run_dir);
  }
  if (cfg.checkpoint.every > 0) core::checkpoint::check_writable(ckpt_root, ctx.comm);

  const std::atomic<bool>& stop = install_stop_signals(cfg.runtime.stop_grace_s);

  if (lead) {
    fmt::print("flotilla {} | run dir {} | {} rank(s) x {} thread(s)\n", FLOTILLA_VERSION, run_dir,
               ctx.world_size, ctx.threads);
    fmt::print("--- resolved config ---\n{}-----------------------\n", resolved);
    if (cfg.checkpoint.every > 0)
      fmt::print("checkpoints: every {} steps and at the end into {} (keep {})\n",
                 cfg.checkpoint.every, ckpt_root, cfg.checkpoint.keep);
    else
      fmt::print("checkpoints: none (checkpoint.every = 0)\n");
    if (cfg.optim.warmup_steps > cfg.train.steps)
      fmt::print("note: optim.warmup_steps = {} is longer than train.steps = {}: the warmup is cut "
                 "short and the learning rate ends at {:.3g} of its peak\n",
                 cfg.optim.warmup_steps, cfg.train.steps,
                 static_cast<double>(cfg.train.steps) / cfg.optim.warmup_steps);
  }
  core::Trainer trainer(cfg, ctx, run_dir, /*log=*/true, &stop);
  if (!args.trace.empty())
    trainer.trace_step(std::min<int64_t>(args.trace_step, cfg.train.steps), args.trace);
  check_expectations_possible(cfg, trainer.dataset().entropy_floor(), lead);
  trainer.set_save_pause(rt.env.test_save_pause_s);
  if (!resume.empty()) {
    const std::vector<std::string> notes = trainer.resume_from(resume);
    if (lead) {
      fmt::print("resuming from {} at step {}\n", resume, trainer.progress().step);
      for (const auto& n : notes) fmt::print("note: changed since the checkpoint: {}\n", n);
    }
    if (trainer.progress().step >= cfg.train.steps) {
      if (lead)
        fmt::print("nothing to train: the checkpoint is at step {} and train.steps = {}; raise "
                   "train.steps to train further, or start over with train.resume=never\n",
                   trainer.progress().step, cfg.train.steps);
      return 0;
    }
  }
  if (lead) {
    const auto& ps = trainer.model().params();
    const auto& sched = trainer.schedule();
    fmt::print("layout: {} | schedule {}{} with {} micro-batches per step\n", trainer.grid().describe(),
               parallel::schedule_kind_name(sched.kind), sched.ep_overlap ? " (expert-parallel overlap form)" : "",
               sched.chunks);
    if (sched.num_stages > 1)
      fmt::print("stages: {}\n", core::describe_plans(cfg, trainer.stage_plans()));
    fmt::print("data: {}\n", trainer.dataset().describe());
    fmt::print("model: {:.2f}M parameters on this rank ({:.2f}M active per token in the model), "
               "{:.1f} MFLOP per token (fwd+bwd)\n",
               ps.numel_unpadded() / 1e6, trainer.model().active_params() / 1e6,
               trainer.model().flops_per_token() / 1e6);
    print_memory_plan(cfg, trainer);
  }
  std::fflush(stdout);

  core::TrainResult r;
  try {
    r = trainer.run();
  } catch (...) {
    if (lead) write_run_report(run_dir);  // a diverged run is where plots help most
    throw;
  }
  if (!lead) return r.interrupted ? kExitStopped : 0;
  print_memory_used(trainer);
  std::string summary = fmt::format("final: step {} | train loss {:.4f}", r.steps, r.final_loss);
  if (r.final_eval_loss >= 0) summary += fmt::format(" | eval loss {:.4f}", r.final_eval_loss);
  if (r.entropy_floor >= 0) {
    double loss = r.final_eval_loss >= 0 ? r.final_eval_loss : r.final_loss;
    summary += fmt::format(" | entropy floor {:.4f} | ln V {:.4f} | gap closed {:.1f}%",
                           r.entropy_floor, r.ln_vocab, gap_closed_percent(r, loss));
  }
  fmt::print("{}\n", summary);
  write_run_report(run_dir);
  if (r.interrupted) {
    fmt::print("stopped by signal after step {}{}\n", r.steps,
               r.checkpoint.empty() ? std::string(" (no checkpoint: checkpoint.every = 0)")
                                    : "; checkpoint " + r.checkpoint);
    if (cfg.train.expect.eval_loss_below > 0 || cfg.train.expect.gap_closed_above > 0)
      fmt::print("expectations not checked: the run stopped before its final evaluation\n");
    return kExitStopped;
  }
  if (!check_expectations(cfg, r)) return 3;
  return 0;
}

}  // namespace launch
