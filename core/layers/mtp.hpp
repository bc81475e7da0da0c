// One multi-token-prediction module of DeepSeek-V3 (module k predicts token i + k + 1):
//   h'_i = M_k [RMSNorm(Emb(t_{i+k})) ; RMSNorm(h^{k-1}_i)]   (embedding half first)
//   h^k  = TRM_k(h')  (a full transformer block: MLA + MoE, or dense when the model has no MoE)
// Its output goes to the shared head through its own final norm (HeadLoss, owned by the model).
// Names: module k is checkpoint layer num_layers + k - 1 (enorm, hnorm, eh_proj, block weights).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/layers/layer.hpp"
#include "core/layers/linear.hpp"

namespace core {

class Moe;

class MtpModule {
 public:
  // moe_index: the index its block's MoE layer gets among the model's MoE layers.
  MtpModule(LayerEnv& env, const ModelConfig& m, int layer_index, int moe_index);
  // e: embeddings of the shifted tokens [N, D]; h: previous depth's hidden [N, D]; out written.
  void forward(int slot, const Tensor& e, const Tensor& h, const Tensor& out);
  // de and dh written; dout stays valid until backward_weight (as for Layer).
  void backward_input(int slot, const Tensor& dout, const Tensor& de, const Tensor& dh);
  void backward_weight(int slot);
  // Phases as Layer's: those of its block's FFN (MoE: exchanges in flight between phases).
  int phases() const { return ffn_->phases(); }
  void forward_phase(int phase, int slot, const Tensor& e, const Tensor& h, const Tensor& out);
  void backward_phase(int phase, int slot, const Tensor& dout, const Tensor& de, const Tensor& dh);
  // The block's MoE (nullptr when the block is dense).
  Moe* moe() { return moe_; }

 private:
  struct Saved {
    LinearOperand cat;  // the projection's input, kept in the precision's form
    Tensor e, h, rstd_e, rstd_h, hp, a1, da1, dhp, dcat;
  };
  LayerEnv& env_;
  int64_t D_;
  double eps_;
  int w_enorm_ = -1, w_hnorm_ = -1, w_eh_ = -1;
  std::unique_ptr<Layer> attn_, ffn_;
  Moe* moe_ = nullptr;
  std::vector<Saved> saved_;
};

}  // namespace core
