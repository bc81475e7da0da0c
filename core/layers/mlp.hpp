// SwiGLU MLP  W2(silu(W1 a) * W3 a), the dense FFN of the first layers and the shared experts,
// and FfnLayer, the pre-norm residual layer around it (y = x + MLP(RMSNorm(x))).
//
// W1 and W3 are stored as one [2I, D] matrix "gate_up_proj" (gate rows first) so that one GEMM
// computes both; export splits it into the checkpoint's gate_proj / up_proj.
#pragma once

#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/layers/layer.hpp"

namespace core {

// Not a residual layer: out = MLP(a), used inside FfnLayer and MoeLayer.
class SwigluMlp {
 public:
  // prefix: e.g. "model.layers.0.mlp." or "model.layers.3.mlp.shared_experts.".
  SwigluMlp(LayerEnv& env, const std::string& prefix, int64_t hidden, int64_t intermediate,
            double init_std);
  // out [N, D] written (accumulate = false) or added to.
  void forward(int slot, const Tensor& a, const Tensor& out, bool accumulate);
  // da [N, D] written or added to.
  void backward_input(int slot, const Tensor& dout, const Tensor& da, bool accumulate);
  void backward_weight(int slot);

 private:
  struct Saved {
    Tensor a, h, g, dout, dh;
  };
  LayerEnv& env_;
  int64_t D_, I_;
  int w13_ = -1, w2_ = -1;
  std::vector<Saved> saved_;
};

class FfnLayer : public Layer {
 public:
  FfnLayer(LayerEnv& env, const ModelConfig& m, const std::string& prefix);
  void forward(int slot, const Tensor& x, const Tensor& y) override;
  void backward_input(int slot, const Tensor& dy, const Tensor& dx) override;
  void backward_weight(int slot) override;

 private:
  struct Saved {
    Tensor x, rstd, a, da;
  };
  double eps_;
  int w_norm_ = -1;
  SwigluMlp mlp_;
  std::vector<Saved> saved_;
};

}  // namespace core
