// Model: a DeepSeek-V3 decoder for one rank: embedding, blocks of (MLA, dense FFN or MoE),
// final norm + output head, and the MTP modules, over one ParamStore and per-micro-batch slots.
//
// The model's backward is its forward in reverse. forward / backward_input / backward_weight run
// per micro-batch slot, so a pipeline executor can keep several micro-batches in flight and defer
// weight gradients; the sequential trainer calls them back to back.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/config.hpp"
#include "core/data/dataset.hpp"
#include "core/layers/embedding_head.hpp"
#include "core/layers/layer.hpp"
#include "core/layers/moe.hpp"
#include "core/layers/mtp.hpp"

namespace core {

// How one micro-batch's losses enter the step loss (its gradient scales).
struct LossScales {
  double lm = 0;   // per counted main-head token: 1 / tokens of the global batch
  double mtp = 0;  // per counted token of each MTP head: (mtp.loss_weight / depth) / global tokens
  double aux = 0;  // for the balance losses: sequences of this micro-batch / global batch sequences
};

struct MicroLosses {
  double lm_sum = 0;  // summed cross-entropy of the main head
  int64_t lm_tokens = 0;
  std::vector<double> mtp_sum;  // per MTP depth
  std::vector<int64_t> mtp_tokens;
  double aux = 0;  // sum over MoE layers of the weighted balance loss of this micro-batch
};

class Model {
 public:
  Model(const Config& cfg, Context& ctx, DType dtype, int slots);
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  Activations& activations() { return acts_; }
  const Config& config() const { return cfg_; }
  void init(uint64_t seed) { params_.init(seed); }

  MicroLosses forward(int slot, const data::MicroBatch& mb, const LossScales& scales, bool training);
  void backward_input(int slot);
  // Accumulates the weight gradients of the micro-batch and frees its slot.
  void backward_weight(int slot);
  // Releases a slot without backward (evaluation).
  void release(int slot);

  // Every MoE layer, main blocks first, then the MTP blocks.
  const std::vector<Moe*>& moe_layers() const { return moe_; }
  // Model FLOPs per token for forward + backward (3x the forward matmul and attention FLOPs).
  double flops_per_token() const;
  // Parameters used per token (routed experts counted k of E) and in total.
  int64_t active_params() const;

 private:
  struct Saved {
    Tensor inputs, x0;
    std::vector<Tensor> targets;  // per head: main, then each MTP depth
    std::vector<Tensor> outs;     // outputs of each main layer
    std::vector<Tensor> mtp_emb, mtp_out;
    LossScales scales;
  };
  Config cfg_;
  ParamStore params_;
  Activations acts_;
  LayerEnv env_;
  std::unique_ptr<Embedding> embed_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::unique_ptr<HeadLoss> head_;
  std::vector<std::unique_ptr<MtpModule>> mtp_;
  std::vector<std::unique_ptr<HeadLoss>> mtp_heads_;
  std::vector<Moe*> moe_;
  std::vector<Saved> saved_;
};

}  // namespace core
