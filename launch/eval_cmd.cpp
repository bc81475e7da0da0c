// `flotilla eval`: a checkpoint's or an HF model's loss on a token file, as one JSON line.
// Eval runs in one process (the whole model in one stage); progress notes go to stderr so that
// stdout holds only the JSON line.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/checkpoint/hf.hpp"
#include "core/checkpoint/reader.hpp"
#include "core/context.hpp"
#include "core/error.hpp"
#include "core/model.hpp"
#include "core/token_eval.hpp"
#include "launch/commands.hpp"
#include "launch/environment.hpp"

namespace launch {

int run_eval(const EvalArgs& args) {
  const LaunchEnv env = read_launch_env();
  if (env.world_size > 1)
    FLOT_THROW(core::ConfigError,
               "flotilla eval runs in one process; launch it without mpirun "
               "(it uses every core of the process)");
  std::unique_ptr<core::checkpoint::CheckpointReader> ck;
  std::unique_ptr<core::checkpoint::HfReader> hf;
  core::Config cfg;
  if (!args.checkpoint.empty()) {
    ck = std::make_unique<core::checkpoint::CheckpointReader>(
        core::checkpoint::resolve_checkpoint_path(args.checkpoint));
    cfg = ck->config();
  } else {
    hf = std::make_unique<core::checkpoint::HfReader>(args.hf);
    cfg = core::checkpoint::config_from_hf(hf->config(), core::Config{}, args.hf + "/config.json",
                                           /*take_seq_len=*/true);
  }
  // Only the model matters here; the rest describes this evaluation.
  cfg.train.seq_len = args.seq_len > 0 ? args.seq_len : cfg.train.seq_len;
  cfg.train.micro_batch_size = cfg.train.global_batch_size = args.batch;
  cfg.train.threads = args.threads;
  cfg.parallel = core::ParallelConfig{};
  cfg.data = core::DataConfig{};
  cfg.data.synthetic.period = 0;
  core::validate(cfg);

  auto single = parallel::make_single_process_communicator();
  core::Context ctx;
  ctx.comm = single.get();
  ctx.threads = resolve_threads(args.threads, env);
  core::apply_threads(ctx);
  core::Model model(cfg, ctx, core::DType::f32, /*slots=*/1);
  if (ck) {
    core::checkpoint::RankShare share;
    share.params = &model.params();
    core::checkpoint::load_share(*ck, share);
    std::fprintf(stderr, "eval: %s (step %lld)\n", ck->dir().c_str(),
                 static_cast<long long>(ck->manifest().progress.step));
  } else {
    core::checkpoint::load_hf(*hf, model.params());
    std::fprintf(stderr, "eval: HF model %s\n", args.hf.c_str());
  }
  core::data::TokenFile file(args.data);
  std::fprintf(stderr, "eval: %s, windows of %d + 1 tokens, %d per pass, %d thread(s)\n",
               file.describe().c_str(), cfg.train.seq_len, args.batch, ctx.threads);
  const core::TokenEval r = core::evaluate_token_file(model, file, cfg.train.seq_len, args.batch);
  nlohmann::json j;
  j["lm_loss"] = r.lm_loss;
  j["mtp_loss"] = r.mtp_loss ? nlohmann::json(*r.mtp_loss) : nlohmann::json(nullptr);
  j["tokens"] = r.tokens;
  j["windows"] = r.windows;
  j["seq_len"] = cfg.train.seq_len;
  fmt::print("{}\n", j.dump());
  return 0;
}

}  // namespace launch
