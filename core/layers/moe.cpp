// DeepSeekMoE: gate -> dispatch -> grouped experts -> combine, forward and backward.
#include "core/layers/moe.hpp"

#include <algorithm>

#include "kernels/ops.hpp"

namespace core {

Moe::Moe(LayerEnv& env, const ModelConfig& m, const std::string& prefix) : env_(env) {
  const auto& moe = m.moe;
  gate_.num_experts = moe.num_experts;
  gate_.top_k = moe.experts_per_token;
  gate_.num_groups = moe.num_groups;
  gate_.groups_per_token = moe.groups_per_token;
  gate_.route_scale = moe.route_scale;
  D_ = m.hidden_size;
  F_ = moe.expert_intermediate_size;
  if (moe.balancer == "aux_free") {
    balance_weight_ = moe.sequence_aux_loss_weight;
    balance_segment_ = -1;  // one sequence
  } else if (moe.balancer == "aux_loss") {
    balance_weight_ = moe.aux_loss_weight;
    balance_segment_ = 0;  // the whole micro-batch
  }
  auto& ps = env.params;
  const std::string p = prefix + "mlp.";
  const int64_t E = gate_.num_experts;
  w_gate_ = add_matrix(ps, p + "gate.weight", E, D_, m.init_std);
  bias_ = ps.add_buffer(p + "gate.e_score_correction_bias", {E});
  ParamSpec w13;
  w13.name = p + "experts.{}.gate_up_proj.weight";
  w13.shape = {E, 2 * F_, D_};
  w13.stack_first = 0;
  w13.std = m.init_std;
  w13_ = ps.add(w13);
  ParamSpec w2 = w13;
  w2.name = p + "experts.{}.down_proj.weight";
  w2.shape = {E, D_, F_};
  w2_ = ps.add(w2);
  if (moe.num_shared_experts > 0)
    shared_ = std::make_unique<SwigluMlp>(env, p + "shared_experts.", D_,
                                          F_ * moe.num_shared_experts, m.init_std);
  loads_.assign(E, 0);
}

void Moe::forward(int slot, const Tensor& a, const Tensor& out) {
  gate(slot, a);
  dispatch(slot);
  experts(slot);
  combine(slot, out);
}

void Moe::backward_input(int slot, const Tensor& dout, const Tensor& da) {
  combine_backward(slot, dout);
  experts_backward(slot);
  dispatch_backward(slot, dout, da);
  gate_backward(slot, da);
}

void Moe::gate(int slot, const Tensor& a) {
  Context& ctx = env_.ctx;
  Saved& s = slot_state(saved_, slot);
  s = Saved{};
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t N = a.rows(), E = gate_.num_experts, k = gate_.top_k;
  s.a = a;
  ScratchScope scope(env_.acts.scratch());
  Tensor logits = env_.acts.scratch().alloc(dt, {N, E});
  linear_forward(ctx, s.a, env_.params.param(w_gate_), logits);
  s.scores = ar.alloc(dt, {N, E});
  s.idx = ar.alloc(DType::i32, {N, k});
  s.weights = ar.alloc(dt, {N, k});
  kernels::gate_forward(ctx, gate_, logits, env_.params.buffer(bias_), s.scores, s.idx, s.weights);
  s.offsets = ar.alloc(DType::i32, {E + 1});
  s.src = ar.alloc(DType::i32, {N * k});
  s.pos = ar.alloc(DType::i32, {N * k});
  kernels::moe_plan(ctx, s.idx, static_cast<int>(E), s.offsets, s.src, s.pos);
  if (env_.count_loads) {
    const int32_t* off = s.offsets.ptr<int32_t>();
    for (int64_t e = 0; e < E; ++e) loads_[e] += off[e + 1] - off[e];
  }
  if (balance_weight_ > 0) {
    s.aux_loss = kernels::balance_loss_forward(ctx, s.scores, static_cast<int>(k), segment(N),
                                               balance_weight_);
    s.aux_grad = env_.aux_grad_scale;
  }
}

void Moe::dispatch(int slot) {
  Saved& s = saved_.at(slot);
  const int64_t N = s.a.rows(), k = gate_.top_k;
  s.xs = env_.acts.slot(slot).alloc(env_.params.dtype(), {N * k, D_});
  kernels::moe_permute(env_.ctx, s.a, s.src, static_cast<int>(k), s.xs);
}

void Moe::experts(int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t rows = s.xs.rows();
  s.h = ar.alloc(dt, {rows, 2 * F_});
  s.g = ar.alloc(dt, {rows, F_});
  s.ys = ar.alloc(dt, {rows, D_});
  kernels::grouped_gemm(env_.ctx, s.xs, env_.params.param(w13_), true, s.offsets, s.h);
  kernels::swiglu_forward(env_.ctx, s.h, s.g);
  kernels::grouped_gemm(env_.ctx, s.g, env_.params.param(w2_), true, s.offsets, s.ys);
}

void Moe::combine(int slot, const Tensor& out) {
  Saved& s = saved_.at(slot);
  if (shared_)
    shared_->forward(slot, s.a, out, /*accumulate=*/false);
  else
    kernels::fill(out, 0.0);
  kernels::moe_combine(env_.ctx, s.ys, s.weights, s.pos, out);
}

void Moe::combine_backward(int slot, const Tensor& dout) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  s.dys = ar.alloc(dt, {s.ys.rows(), D_});
  s.dweights = ar.alloc(dt, {s.a.rows(), gate_.top_k});
  kernels::moe_combine_backward(env_.ctx, dout, s.ys, s.weights, s.pos, s.dys, s.dweights);
}

void Moe::experts_backward(int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t rows = s.dys.rows();
  ScratchScope scope(env_.acts.scratch());
  Tensor dg = env_.acts.scratch().alloc(dt, {rows, F_});
  kernels::grouped_gemm(env_.ctx, s.dys, env_.params.param(w2_), false, s.offsets, dg);
  s.dh = ar.alloc(dt, {rows, 2 * F_});
  kernels::swiglu_backward(env_.ctx, dg, s.h, s.dh);
  s.dxs = ar.alloc(dt, {rows, D_});
  kernels::grouped_gemm(env_.ctx, s.dh, env_.params.param(w13_), false, s.offsets, s.dxs);
}

void Moe::dispatch_backward(int slot, const Tensor& dout, const Tensor& da) {
  Saved& s = saved_.at(slot);
  kernels::fill(da, 0.0);
  kernels::moe_permute_backward(env_.ctx, s.dxs, s.pos, gate_.top_k, da);
  if (shared_) shared_->backward_input(slot, dout, da, /*accumulate=*/true);
}

void Moe::gate_backward(int slot, const Tensor& da) {
  Saved& s = saved_.at(slot);
  const DType dt = env_.params.dtype();
  const int64_t N = s.a.rows(), E = gate_.num_experts;
  ScratchScope scope(env_.acts.scratch());
  Tensor dscores;  // the balance loss' gradient arrives directly at the scores
  if (balance_weight_ > 0) {
    dscores = env_.acts.scratch().alloc(dt, {N, E});
    kernels::fill(dscores, 0.0);
    kernels::balance_loss_backward(env_.ctx, s.scores, gate_.top_k, segment(N), balance_weight_,
                                   s.aux_grad, dscores);
  }
  s.dlogits = env_.acts.slot(slot).alloc(dt, {N, E});
  kernels::gate_backward(env_.ctx, gate_, s.dweights, s.scores, s.idx, dscores, s.dlogits);
  linear_backward_input(env_.ctx, s.dlogits, env_.params.param(w_gate_), da, /*accumulate=*/true);
}

void Moe::backward_weight(int slot) {
  Context& ctx = env_.ctx;
  Saved& s = saved_.at(slot);
  auto G = [&](int id) { return env_.params.grad(id); };
  kernels::grouped_gemm_wgrad(ctx, s.dys, s.g, s.offsets, G(w2_));
  kernels::grouped_gemm_wgrad(ctx, s.dh, s.xs, s.offsets, G(w13_));
  linear_backward_weight(ctx, s.dlogits, s.a, G(w_gate_));
  if (shared_) shared_->backward_weight(slot);
  double aux = s.aux_loss;
  s = Saved{};
  s.aux_loss = aux;
}

std::unique_ptr<Layer> make_moe_layer(LayerEnv& env, const ModelConfig& m, const std::string& prefix,
                                      Moe** moe) {
  auto inner = std::make_unique<Moe>(env, m, prefix);
  if (moe) *moe = inner.get();
  return std::make_unique<ResidualLayer>(env, prefix + "post_attention_layernorm.weight",
                                         m.hidden_size, m.rms_norm_eps, std::move(inner));
}

}  // namespace core
