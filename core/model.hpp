// Model: this rank's part of a DeepSeek-V3 decoder — its pipeline stages (one holding the whole
// model in a single process, one or two under a pipeline) over one ParamStore.
//
// Stages are built in ascending stage order, so two ranks that hold the same stages (DualPipe's
// mirrored copies) lay out their parameters identically. A parameter both stages of a rank use
// (the embedding, at the first stage and in the MTP modules of the last) exists once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/config.hpp"
#include "core/stage.hpp"

namespace core {

class Model {
 public:
  // The whole model as one stage with `slots` activation slots (a single process; tests).
  Model(const Config& cfg, Context& ctx, DType dtype, int slots);
  // The stages `plans` (ascending), with slots[i] activation slots each; `ep` the expert group;
  // pad: the parameter regions' padding (parallel::GradSync::padding).
  Model(const Config& cfg, Context& ctx, DType dtype, const std::vector<StagePlan>& plans,
        const std::vector<int>& slots, parallel::Communicator* ep,
        std::array<int64_t, kParamGroups> pad);
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  const Config& config() const { return cfg_; }
  void init(uint64_t seed) { params_.init(seed); }

  int num_stages() const { return static_cast<int>(stages_.size()); }
  Stage& stage(int i) { return *stages_.at(i); }
  // The stage holding global stage `s`, or null.
  Stage* find_stage(int s);

  // One-stage conveniences (the whole model): forward, input pass, weight pass (frees the slot).
  MicroLosses forward(int slot, const data::MicroBatch& mb, const LossScales& scales, bool training);
  void backward_input(int slot);
  void backward_weight(int slot);
  void release(int slot);

  // Every MoE layer of this rank, ordered by their model-wide index (Moe::index()).
  const std::vector<Moe*>& moe_layers() const { return moe_; }
  // MoE layers of the whole model (main blocks, then MTP blocks).
  int total_moe_layers() const;
  // Model FLOPs per token for forward + backward (3x the forward matmul and attention FLOPs).
  double flops_per_token() const;
  // Parameters used per token (routed experts counted k of E) and in total.
  int64_t active_params() const;
  // Activation memory of every stage's slots.
  size_t activation_bytes() const;
  size_t exchange_bytes() const;  // expert-parallel receive buffers

 private:
  Stage& only();
  Config cfg_;
  ParamStore params_;
  std::vector<std::unique_ptr<Stage>> stages_;
  std::vector<Moe*> moe_;
};

}  // namespace core
