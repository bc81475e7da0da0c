// SwiGLU MLP and the dense FFN residual layer.
#include "core/layers/mlp.hpp"

#include "kernels/ops.hpp"

namespace core {

SwigluMlp::SwigluMlp(LayerEnv& env, const std::string& prefix, int64_t hidden,
                     int64_t intermediate, double init_std)
    : env_(env), D_(hidden), I_(intermediate) {
  w13_ = add_matrix(env.params, prefix + "gate_up_proj.weight", 2 * I_, D_, init_std);
  w2_ = add_matrix(env.params, prefix + "down_proj.weight", D_, I_, init_std);
}

void SwigluMlp::forward(int slot, const Tensor& a, const Tensor& out, bool accumulate) {
  if (static_cast<int>(saved_.size()) <= slot) saved_.resize(slot + 1);
  Saved& s = saved_[slot];
  BumpArena& ar = env_.acts.slot(slot);
  const int64_t N = a.rows();
  const DType dt = env_.params.dtype();
  s.a = a;
  s.h = ar.alloc(dt, {N, 2 * I_});
  s.g = ar.alloc(dt, {N, I_});
  linear_forward(env_.ctx, a, env_.params.param(w13_), s.h);
  kernels::swiglu_forward(env_.ctx, s.h, s.g);
  kernels::gemm(env_.ctx, s.g, false, env_.params.param(w2_), true, out, 1.0, accumulate ? 1.0 : 0.0);
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
  linear_backward_input(env_.ctx, dout, env_.params.param(w2_), dg);
  kernels::swiglu_backward(env_.ctx, dg, s.h, s.dh);
  linear_backward_input(env_.ctx, s.dh, env_.params.param(w13_), da, accumulate);
}

void SwigluMlp::backward_weight(int slot) {
  Saved& s = saved_.at(slot);
  linear_backward_weight(env_.ctx, s.dout, s.g, env_.params.grad(w2_));
  linear_backward_weight(env_.ctx, s.dh, s.a, env_.params.grad(w13_));
  s = Saved{};
}

FfnLayer::FfnLayer(LayerEnv& env, const ModelConfig& m, const std::string& prefix)
    : Layer(env),
      eps_(m.rms_norm_eps),
      w_norm_(add_norm(env.params, prefix + "post_attention_layernorm.weight", m.hidden_size)),
      mlp_(env, prefix + "mlp.", m.hidden_size, m.dense_intermediate_size, m.init_std) {}

void FfnLayer::forward(int slot, const Tensor& x, const Tensor& y) {
  Saved& s = saved(saved_, slot);
  BumpArena& ar = slot_arena(slot);
  const int64_t N = x.rows(), D = x.cols();
  s.x = x;
  s.rstd = ar.alloc(dtype(), {N});
  s.a = ar.alloc(dtype(), {N, D});
  kernels::rmsnorm_forward(env_.ctx, x, P(w_norm_), eps_, s.a, s.rstd);
  kernels::copy(x, y);
  mlp_.forward(slot, s.a, y, /*accumulate=*/true);
}

void FfnLayer::backward_input(int slot, const Tensor& dy, const Tensor& dx) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = slot_arena(slot);
  // dy is the caller's buffer and may be reused before backward_weight: keep a copy.
  Tensor dy_kept = ar.alloc(dtype(), {dy.rows(), dy.cols()});
  kernels::copy(dy, dy_kept);
  s.da = ar.alloc(dtype(), {dy.rows(), dy.cols()});
  mlp_.backward_input(slot, dy_kept, s.da, false);
  kernels::rmsnorm_backward_input(env_.ctx, s.da, s.x, P(w_norm_), s.rstd, dx);
  kernels::axpy(1.0, dy, dx);
}

void FfnLayer::backward_weight(int slot) {
  Saved& s = saved_.at(slot);
  mlp_.backward_weight(slot);
  kernels::rmsnorm_backward_weight(env_.ctx, s.da, s.x, s.rstd, G(w_norm_));
  s = Saved{};
}

}  // namespace core
