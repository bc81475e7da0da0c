// DeepSeekMoE as a pre-norm residual layer: y = x + shared(a) + sum_i g_i expert_i(a), a = RMSNorm(x).
//
// Stages: gate (sigmoid scores, selection-only bias, group-limited top-k) -> dispatch (permute the
// N*k token copies into contiguous per-expert segments) -> experts (two grouped GEMMs over the
// stacked [experts, ...] weights with a SwiGLU between) -> combine (weighted un-permute). Dispatch
// and combine are where expert parallelism puts its all-to-all; in one process they are local.
// Dropless: every token reaches its k experts whatever the imbalance.
//
// The layer also counts expert loads (tokens per expert) for the aux-loss-free balancer and adds
// the configured balance loss (sequence-wise for aux_free, batch-wise for aux_loss) to the gate.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/layers/layer.hpp"
#include "core/layers/mlp.hpp"
#include "kernels/moe_ops.hpp"

namespace core {

class MoeLayer : public Layer {
 public:
  MoeLayer(LayerEnv& env, const ModelConfig& m, const std::string& prefix);
  void forward(int slot, const Tensor& x, const Tensor& y) override;
  void backward_input(int slot, const Tensor& dy, const Tensor& dx) override;
  void backward_weight(int slot) override;

  int num_experts() const { return gate_.num_experts; }
  // Tokens routed to each expert by the forwards since the last clear (training forwards only).
  const std::vector<int64_t>& loads() const { return loads_; }
  void clear_loads() { std::fill(loads_.begin(), loads_.end(), 0); }
  // The balance-loss value of this slot's forward (already multiplied by its weight), 0 if none.
  double balance_loss(int slot) const { return saved_.at(slot).aux_loss; }
  int bias_id() const { return bias_; }

 private:
  struct Saved {
    Tensor x, rstd, a, scores, idx, weights, offsets, src, pos, xs, h, g, ys;
    Tensor da, dys, dh, dlogits;
    double aux_loss = 0, aux_grad = 0;
  };
  kernels::GateShape gate_;
  int64_t D_, F_;
  double eps_, balance_weight_ = 0;
  int64_t balance_segment_ = 0;  // 0 = the whole micro-batch (batch-wise aux loss)
  int w_norm_ = -1, w_gate_ = -1, bias_ = -1, w13_ = -1, w2_ = -1;
  std::unique_ptr<SwigluMlp> shared_;
  std::vector<int64_t> loads_;
  std::vector<Saved> saved_;
};

}  // namespace core
