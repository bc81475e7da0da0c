// SwiGLU MLP and the dense FFN layer.
#include "core/layers/mlp.hpp"

#include "kernels/ops.hpp"

namespace core {

SwigluMlp::SwigluMlp(LayerEnv& env, const std::string& prefix, int64_t hidden,
                     int64_t intermediate, double init_std)
    : env_(env), D_(hidden), I_(intermediate) {
  w13_ = add_matrix(env.params, prefix + "gate_up_proj.weight", 2 * I_, D_, init_std);
  w2_ = add_matrix(env.params, prefix + "down_proj.weight", D_, I_, init_std);
}

void SwigluMlp::forward(int slot, const Tensor& a, const Tensor& out) {
  forward(slot, keep_linear_input(env_, a, env_.acts.slot(slot)), out, false);
}

void SwigluMlp::forward(int slot, const LinearOperand& a, const Tensor& out, bool accumulate) {
  Saved& s = slot_state(saved_, slot);
  BumpArena& ar = env_.acts.slot(slot);
  const int64_t N = a.rows();
  const DType dt = env_.params.dtype();
  s.a = a;
  s.h = ar.alloc(dt, {N, 2 * I_});  // SwiGLU's backward reads it
  linear_forward(env_, a, env_.params.param(w13_), s.h);
  // g only feeds the down projection: in low precision its copy is what stays.
  ScratchScope scope(env_.acts.scratch());
  const bool fp32 = env_.precision == Precision::fp32;
  Tensor g = (fp32 ? ar : env_.acts.scratch()).alloc(dt, {N, I_});
  kernels::swiglu_forward(env_.ctx, s.h, g);
  s.g = keep_linear_input(env_, g, ar);
  linear_forward(env_, s.g, env_.params.param(w2_), out, accumulate);
}

void SwigluMlp::backward_input(int slot, const Tensor& dout, const Tensor& da, bool accumulate) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const int64_t N = s.a.rows();
  const DType dt = env_.params.dtype();
  s.dout = dout;  // owned by the caller's slot memory until backward_weight
  s.dh = ar.alloc(dt, {N, 2 * I_});
  ScratchScope scope(env_.acts.scratch());
  Tensor dg = env_.acts.scratch().alloc(dt, {N, I_});
  linear_backward_input(env_, dout, env_.params.param(w2_), dg);
  kernels::swiglu_backward(env_.ctx, dg, s.h, s.dh);
  linear_backward_input(env_, s.dh, env_.params.param(w13_), da, accumulate);
}

void SwigluMlp::backward_weight(int slot) {
  Saved& s = saved_.at(slot);
  linear_backward_weight(env_, s.dout, s.g, env_.params.grad(w2_));
  linear_backward_weight(env_, s.dh, s.a, env_.params.grad(w13_));
  s = Saved{};
}

std::unique_ptr<Layer> make_ffn_layer(LayerEnv& env, const ModelConfig& m, const std::string& prefix) {
  return std::make_unique<ResidualLayer>(
      env, prefix + "post_attention_layernorm.weight", m.hidden_size, m.rms_norm_eps,
      std::make_unique<SwigluMlp>(env, prefix + "mlp.", m.hidden_size, m.dense_intermediate_size,
                                  m.init_std));
}

}  // namespace core
