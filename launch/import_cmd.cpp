// `flotilla import`: HF DeepSeek-V3 weights (config.json + safetensors) as a step-0 checkpoint
// without optimizer state, to train from with train.resume. Holds the model in one process.
#include <fmt/format.h>

#include "core/checkpoint/hf.hpp"
#include "core/checkpoint/writer.hpp"
#include "core/context.hpp"
#include "core/model.hpp"
#include "launch/commands.hpp"
#include "parallel/communicator.hpp"

namespace launch {

int run_import(const ImportArgs& args) {
  core::checkpoint::HfReader hf(args.hf);
  core::Config cfg = core::checkpoint::config_from_hf(
      hf.config(), core::load_config(args.config, args.overrides), args.hf + "/config.json",
      /*take_seq_len=*/false);
  core::validate(cfg);
  auto single = parallel::make_single_process_communicator();
  core::Context ctx;
  ctx.comm = single.get();
  core::Model model(cfg, ctx, core::DType::f32, /*slots=*/1);
  core::ParamStore& ps = model.params();
  core::checkpoint::load_hf(hf, ps);

  core::checkpoint::RankShare share;
  share.params = &ps;
  share.writes = {{0, ps.numel()}};
  share.write_buffers = true;
  core::checkpoint::SaveRequest req;
  req.source = "import";
  req.config_yaml = core::to_yaml(cfg);
  req.data = {{"next_step", 0}, {"next_sequence", 0}};
  req.layout = {{"imported_from", args.hf}};
  const auto res = core::checkpoint::save_checkpoint(args.out, share, req);
  fmt::print(
      "imported {} into {} ({:.1f} MiB, no optimizer state)\n"
      "train from it with: flotilla train --config {}/config.yaml --set train.resume={}\n",
      args.hf, res.path, res.bytes / 1048576.0, res.path, args.out);
  return 0;
}

}  // namespace launch
