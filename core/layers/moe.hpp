// DeepSeekMoE, the inside of the MoE blocks' pre-norm residual layer:
//   out = shared(a) + sum_i g_i expert_i(a),  a = RMSNorm(x) (applied by the ResidualLayer).
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
#include "core/layers/residual.hpp"
#include "kernels/moe_ops.hpp"

namespace core {

class Moe : public Sublayer {
 public:
  // prefix: e.g. "model.layers.3." (names are prefix + "mlp.gate.weight" ...).
  Moe(LayerEnv& env, const ModelConfig& m, const std::string& prefix);
  // forward = gate, dispatch, experts, combine; backward_input = their backwards in reverse.
  void forward(int slot, const Tensor& a, const Tensor& out) override;
  void backward_input(int slot, const Tensor& dout, const Tensor& da) override;
  void backward_weight(int slot) override;

  // The stages one by one, for executors that interleave two micro-batches so that one's
  // all-to-all (inside dispatch and combine under expert parallelism) travels while the other
  // computes. Each stage's state lives in the slot.
  void gate(int slot, const Tensor& a);     // scores, selection, weights, routing plan, loads
  void dispatch(int slot);                  // tokens into per-expert segments
  void experts(int slot);                   // grouped SwiGLU experts
  void combine(int slot, const Tensor& out);  // out = shared(a) + weighted expert outputs
  void combine_backward(int slot, const Tensor& dout);
  void experts_backward(int slot);
  void dispatch_backward(int slot, const Tensor& dout, const Tensor& da);  // da written
  void gate_backward(int slot, const Tensor& da);                          // da accumulated

  int num_experts() const { return gate_.num_experts; }
  // Tokens routed to each expert by the forwards since the last clear (training forwards only).
  const std::vector<int64_t>& loads() const { return loads_; }
  void clear_loads() { std::fill(loads_.begin(), loads_.end(), 0); }
  // The balance-loss value of this slot's forward (already multiplied by its weight), 0 if none.
  double balance_loss(int slot) const { return saved_.at(slot).aux_loss; }
  int bias_id() const { return bias_; }

 private:
  struct Saved {
    Tensor a, scores, idx, weights, offsets, src, pos, xs, h, g, ys;
    Tensor dys, dweights, dh, dxs, dlogits;
    double aux_loss = 0, aux_grad = 0;
  };
  kernels::GateShape gate_;
  int64_t D_, F_;
  double balance_weight_ = 0;
  int64_t balance_segment_ = 0;  // -1 = one sequence (sequence-wise), 0 = the micro-batch
  int64_t segment(int64_t rows) const { return balance_segment_ < 0 ? env_.seq_len : rows; }
  LayerEnv& env_;
  int w_gate_ = -1, bias_ = -1, w13_ = -1, w2_ = -1;
  std::unique_ptr<SwigluMlp> shared_;
  std::vector<int64_t> loads_;
  std::vector<Saved> saved_;
};

// The MoE block's layer: y = x + Moe(RMSNorm(x)). *moe receives the inside (for loads and bias).
std::unique_ptr<Layer> make_moe_layer(LayerEnv& env, const ModelConfig& m, const std::string& prefix,
                                      Moe** moe);

}  // namespace core
