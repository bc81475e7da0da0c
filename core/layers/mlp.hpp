// SwiGLU MLP  W2(silu(W1 a) * W3 a): the dense FFN of the first layers (inside a pre-norm
// residual layer) and the shared experts of the MoE layers.
//
// W1 and W3 are stored as one [2I, D] matrix "gate_up_proj" (gate rows first) so that one GEMM
// computes both; export splits it into the checkpoint's gate_proj / up_proj.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/layers/layer.hpp"
#include "core/layers/linear.hpp"
#include "core/layers/residual.hpp"

namespace core {

// out = MLP(a): the inside of the dense FFN layer, and the shared experts of an MoE layer.
class SwigluMlp : public Sublayer {
 public:
  // prefix: e.g. "model.layers.0.mlp." or "model.layers.3.mlp.shared_experts.".
  SwigluMlp(LayerEnv& env, const std::string& prefix, int64_t hidden, int64_t intermediate,
            double init_std);
  // out [N, D] written (accumulate = false) or added to. `a` is kept (not copied) for the
  // weight pass: the caller keeps its memory until then (the MoE layer passes its FP8 copy).
  void forward(int slot, const LinearOperand& a, const Tensor& out, bool accumulate);
  // da [N, D] written or added to.
  void backward_input(int slot, const Tensor& dout, const Tensor& da, bool accumulate);
  void backward_weight(int slot) override;
  // The dense FFN: `a` is kept in the precision's form (keep_linear_input).
  void forward(int slot, const Tensor& a, const Tensor& out) override;
  void backward_input(int slot, const Tensor& dout, const Tensor& da) override {
    backward_input(slot, dout, da, false);
  }

 private:
  struct Saved {
    LinearOperand a, g;  // the two Linear inputs
    Tensor h, dout, dh;
  };
  LayerEnv& env_;
  int64_t D_, I_;
  int w13_ = -1, w2_ = -1;
  std::vector<Saved> saved_;
};

// The dense block FFN: y = x + SwigluMlp(RMSNorm(x)); prefix e.g. "model.layers.0.".
std::unique_ptr<Layer> make_ffn_layer(LayerEnv& env, const ModelConfig& m, const std::string& prefix);

}  // namespace core
