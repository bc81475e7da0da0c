// The pre-norm residual layer every block is made of, y = x + f(RMSNorm(x)), and the interface
// of its inside f (Sublayer): MLA attention, the dense SwiGLU MLP, or DeepSeekMoE.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/layers/layer.hpp"

namespace core {

class Sublayer {
 public:
  virtual ~Sublayer() = default;
  // a, out [N, D]; out written.
  virtual void forward(int slot, const Tensor& a, const Tensor& out) = 0;
  // da written. The caller keeps dout alive until backward_weight of the slot.
  virtual void backward_input(int slot, const Tensor& dout, const Tensor& da) = 0;
  virtual void backward_weight(int slot) = 0;
  // Phases as Layer's (an exchange in flight between phase p and p + 1).
  virtual int phases() const { return 1; }
  virtual void forward_phase(int phase, int slot, const Tensor& a, const Tensor& out) {
    forward(slot, a, out);
  }
  virtual void backward_phase(int phase, int slot, const Tensor& dout, const Tensor& da) {
    backward_input(slot, dout, da);
  }
  // Whether the inside reads its input `a` after the forward call that received it. If not (it
  // keeps a BF16 or FP8 copy instead), the residual layer computes `a` in scratch memory, so that
  // the low-precision copy is all that stays in the activation slot.
  virtual bool keeps_input() const { return true; }
};

class ResidualLayer : public Layer {
 public:
  // norm_name: the checkpoint name of the pre-norm weight ("model.layers.3.input_layernorm.weight").
  ResidualLayer(LayerEnv& env, const std::string& norm_name, int64_t dim, double eps,
                std::unique_ptr<Sublayer> inner);
  void forward(int slot, const Tensor& x, const Tensor& y) override;
  void backward_input(int slot, const Tensor& dy, const Tensor& dx) override;
  void backward_weight(int slot) override;
  int phases() const override { return inner_->phases(); }
  void forward_phase(int phase, int slot, const Tensor& x, const Tensor& y) override;
  void backward_phase(int phase, int slot, const Tensor& dy, const Tensor& dx) override;
  Sublayer& inner() { return *inner_; }

 private:
  struct Saved {
    Tensor x, rstd, a, da;
  };
  double eps_;
  int w_norm_ = -1;
  std::unique_ptr<Sublayer> inner_;
  std::vector<Saved> saved_;
};

}  // namespace core
