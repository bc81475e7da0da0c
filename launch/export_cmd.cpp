// `flotilla export`: a checkpoint (any layout) as HF DeepSeek-V3 safetensors, config.json and
// the weight index; streamed one tensor at a time.
#include <fmt/format.h>

#include "core/checkpoint/hf.hpp"
#include "core/checkpoint/reader.hpp"
#include "launch/commands.hpp"

namespace launch {

int run_export(const ExportArgs& args) {
  core::checkpoint::CheckpointReader r(core::checkpoint::resolve_checkpoint_path(args.checkpoint));
  const auto res = core::checkpoint::export_hf(r, args.out, args.dtype, args.shard_mb << 20);
  fmt::print("exported {} (step {}) to {}: {} tensors in {} file(s), {:.1f} MiB of {} weights\n",
             r.dir(), r.manifest().progress.step, args.out, res.tensors, res.files,
             res.bytes / 1048576.0, args.dtype);
  return 0;
}

}  // namespace launch
