// MTP module: two norms, the concatenation projection and a transformer block.
#include "core/layers/mtp.hpp"

#include <cstring>

#include "core/layers/attention.hpp"
#include "core/layers/mlp.hpp"
#include "core/layers/moe.hpp"
#include "kernels/ops.hpp"

namespace core {
namespace {

// cat [N, 2D] rows = [a_n | b_n], or the inverse split.
template <class T>
void concat_rows(T* cat, T* a, T* b, int64_t N, int64_t D, bool split) {
#pragma omp parallel for
  for (int64_t n = 0; n < N; ++n) {
    T* row = cat + n * 2 * D;
    if (split) {
      std::memcpy(a + n * D, row, D * sizeof(T));
      std::memcpy(b + n * D, row + D, D * sizeof(T));
    } else {
      std::memcpy(row, a + n * D, D * sizeof(T));
      std::memcpy(row + D, b + n * D, D * sizeof(T));
    }
  }
}

void concat(const Tensor& cat, const Tensor& a, const Tensor& b, bool split) {
  int64_t N = a.rows(), D = a.cols();
  if (cat.dtype == DType::f32)
    concat_rows(cat.ptr<float>(), a.ptr<float>(), b.ptr<float>(), N, D, split);
  else
    concat_rows(cat.ptr<double>(), a.ptr<double>(), b.ptr<double>(), N, D, split);
}

}  // namespace

MtpModule::MtpModule(LayerEnv& env, const ModelConfig& m, int layer_index, int moe_index)
    : env_(env), D_(m.hidden_size), eps_(m.rms_norm_eps) {
  const std::string prefix = "model.layers." + std::to_string(layer_index) + ".";
  w_enorm_ = add_norm(env.params, prefix + "enorm.weight", D_);
  w_hnorm_ = add_norm(env.params, prefix + "hnorm.weight", D_);
  w_eh_ = add_matrix(env.params, prefix + "eh_proj.weight", D_, 2 * D_, m.init_std);
  attn_ = make_attention_layer(env, m, prefix);
  if (m.first_dense_layers < m.num_layers)
    ffn_ = make_moe_layer(env, m, prefix, moe_index, &moe_);
  else
    ffn_ = make_ffn_layer(env, m, prefix);
}

void MtpModule::forward(int slot, const Tensor& e, const Tensor& h, const Tensor& out) {
  for (int p = 0; p < phases(); ++p) forward_phase(p, slot, e, h, out);
}

void MtpModule::backward_input(int slot, const Tensor& dout, const Tensor& de, const Tensor& dh) {
  for (int p = 0; p < phases(); ++p) backward_phase(p, slot, dout, de, dh);
}

void MtpModule::forward_phase(int phase, int slot, const Tensor& e, const Tensor& h,
                              const Tensor& out) {
  Saved& s = slot_state(saved_, slot);
  if (phase > 0) {
    ffn_->forward_phase(phase, slot, s.a1, out);
    return;
  }
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t N = e.rows();
  s.e = e;
  s.h = h;
  s.rstd_e = ar.alloc(dt, {N});
  s.rstd_h = ar.alloc(dt, {N});
  s.hp = ar.alloc(dt, {N, D_});
  {
    ScratchScope scope(env_.acts.scratch());
    Tensor en = env_.acts.scratch().alloc(dt, {N, D_});
    Tensor hn = env_.acts.scratch().alloc(dt, {N, D_});
    kernels::rmsnorm_forward(env_.ctx, e, env_.params.param(w_enorm_), eps_, en, s.rstd_e);
    kernels::rmsnorm_forward(env_.ctx, h, env_.params.param(w_hnorm_), eps_, hn, s.rstd_h);
    // The concatenation only feeds the projection: in low precision its copy is what stays.
    BumpArena& cat_arena = env_.precision == Precision::fp32 ? ar : env_.acts.scratch();
    Tensor cat = cat_arena.alloc(dt, {N, 2 * D_});
    concat(cat, en, hn, false);
    s.cat = keep_linear_input(env_, cat, ar);
    linear_forward(env_, s.cat, env_.params.param(w_eh_), s.hp);
  }
  s.a1 = ar.alloc(dt, {N, D_});
  attn_->forward(slot, s.hp, s.a1);
  ffn_->forward_phase(0, slot, s.a1, out);
}

void MtpModule::backward_phase(int phase, int slot, const Tensor& dout, const Tensor& de,
                               const Tensor& dh) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t N = s.e.rows();
  if (phase == 0) s.da1 = ar.alloc(dt, {N, D_});
  ffn_->backward_phase(phase, slot, dout, s.da1);
  if (phase < phases() - 1) return;
  Tensor da1 = s.da1;
  s.dhp = ar.alloc(dt, {N, D_});
  attn_->backward_input(slot, da1, s.dhp);
  s.dcat = ar.alloc(dt, {N, 2 * D_});
  linear_backward_input(env_, s.dhp, env_.params.param(w_eh_), s.dcat);
  ScratchScope scope(env_.acts.scratch());
  Tensor den = env_.acts.scratch().alloc(dt, {N, D_});
  Tensor dhn = env_.acts.scratch().alloc(dt, {N, D_});
  concat(s.dcat, den, dhn, true);
  kernels::rmsnorm_backward_input(env_.ctx, den, s.e, env_.params.param(w_enorm_), s.rstd_e, de);
  kernels::rmsnorm_backward_input(env_.ctx, dhn, s.h, env_.params.param(w_hnorm_), s.rstd_h, dh);
}

void MtpModule::backward_weight(int slot) {
  Saved& s = saved_.at(slot);
  const DType dt = env_.params.dtype();
  const int64_t N = s.e.rows();
  ffn_->backward_weight(slot);
  attn_->backward_weight(slot);
  linear_backward_weight(env_, s.dhp, s.cat, env_.params.grad(w_eh_));
  ScratchScope scope(env_.acts.scratch());
  Tensor den = env_.acts.scratch().alloc(dt, {N, D_});
  Tensor dhn = env_.acts.scratch().alloc(dt, {N, D_});
  concat(s.dcat, den, dhn, true);
  kernels::rmsnorm_backward_weight(env_.ctx, den, s.e, s.rstd_e, env_.params.grad(w_enorm_));
  kernels::rmsnorm_backward_weight(env_.ctx, dhn, s.h, s.rstd_h, env_.params.grad(w_hnorm_));
  s = Saved{};
}

}  // namespace core
