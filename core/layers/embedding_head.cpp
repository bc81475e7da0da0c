// Embedding and the fused final-norm + head + cross-entropy.
#include "core/layers/embedding_head.hpp"

#include "kernels/ops.hpp"

namespace core {

Embedding::Embedding(LayerEnv& env, const ModelConfig& m) : env_(env) {
  // One table per rank: the stages of a rank that both need it (first stage, MTP) share it.
  const char* name = "model.embed_tokens.weight";
  w_ = env.params.find(name);
  if (w_ < 0) w_ = add_matrix(env.params, name, m.vocab_size, m.hidden_size, m.init_std);
}

void Embedding::forward(const Tensor& tokens, const Tensor& out) {
  kernels::embedding_forward(env_.ctx, env_.params.param(w_), tokens, out);
}

void Embedding::backward_weight(const Tensor& dout, const Tensor& tokens) {
  kernels::embedding_backward(env_.ctx, dout, tokens, env_.params.grad(w_));
}

HeadLoss::HeadLoss(LayerEnv& env, const ModelConfig& m, const std::string& norm_name, int head_id)
    : env_(env), eps_(m.rms_norm_eps) {
  w_norm_ = add_norm(env.params, norm_name, m.hidden_size);
  w_head_ = head_id >= 0 ? head_id
                         : add_matrix(env.params, "lm_head.weight", m.vocab_size, m.hidden_size,
                                      m.init_std);
}

double HeadLoss::forward(int slot, const Tensor& h, const Tensor& targets, int64_t* valid_count) {
  Saved& s = slot_state(saved_, slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t N = h.rows();
  s.h = h;
  s.targets = targets;
  s.rstd = ar.alloc(dt, {N});
  s.hn = ar.alloc(dt, {N, h.cols()});
  s.lse = ar.alloc(dt, {N});
  kernels::rmsnorm_forward(env_.ctx, h, env_.params.param(w_norm_), eps_, s.hn, s.rstd);
  ScratchScope scope(env_.acts.scratch());
  Tensor losses = env_.acts.scratch().alloc(dt, {N});
  kernels::head_ce_forward(env_.ctx, s.hn, env_.params.param(w_head_), targets, losses, s.lse);
  double sum = 0;
  int64_t valid = 0;
  const int32_t* t = targets.ptr<int32_t>();
  for (int64_t n = 0; n < N; ++n) {
    if (t[n] < 0) continue;
    ++valid;
    sum += dt == DType::f32 ? losses.ptr<float>()[n] : losses.ptr<double>()[n];
  }
  if (valid_count) *valid_count = valid;
  return sum;
}

void HeadLoss::backward(int slot, double scale, const Tensor& dh) {
  Saved& s = saved_.at(slot);
  const DType dt = env_.params.dtype();
  ScratchScope scope(env_.acts.scratch());
  Tensor dhn = env_.acts.scratch().alloc(dt, {s.hn.rows(), s.hn.cols()});
  kernels::head_ce_backward(env_.ctx, s.hn, env_.params.param(w_head_), s.targets, s.lse, scale,
                            dhn, env_.params.grad(w_head_));
  kernels::rmsnorm_backward_input(env_.ctx, dhn, s.h, env_.params.param(w_norm_), s.rstd, dh);
  kernels::rmsnorm_backward_weight(env_.ctx, dhn, s.h, s.rstd, env_.params.grad(w_norm_));
  s = Saved{};
}

}  // namespace core
