// MLA forward, input backward and deferred weight backward.
#include "core/layers/attention.hpp"

#include <cmath>
#include <cstring>

#include "kernels/ops.hpp"

namespace core {

Mla::Mla(LayerEnv& env, const ModelConfig& m, const std::string& p) : env_(env) {
  const auto& a = m.attention;
  H_ = a.num_heads;
  dn_ = a.qk_nope_head_dim;
  dr_ = a.qk_rope_head_dim;
  dv_ = a.v_head_dim;
  qr_ = a.q_lora_rank;
  kvr_ = a.kv_lora_rank;
  D_ = m.hidden_size;
  eps_ = m.rms_norm_eps;
  theta_ = a.rope_theta;
  scale_ = 1.0 / std::sqrt(static_cast<double>(dn_ + dr_));
  auto& ps = env.params;
  const double sd = m.init_std;
  if (qr_ > 0) {
    w_qa_ = add_matrix(ps, p + "q_a_proj.weight", qr_, D_, sd);
    w_qa_norm_ = add_norm(ps, p + "q_a_layernorm.weight", qr_);
    w_qb_ = add_matrix(ps, p + "q_b_proj.weight", H_ * (dn_ + dr_), qr_, sd);
  } else {
    w_q_ = add_matrix(ps, p + "q_proj.weight", H_ * (dn_ + dr_), D_, sd);
  }
  w_kva_ = add_matrix(ps, p + "kv_a_proj_with_mqa.weight", kvr_ + dr_, D_, sd);
  w_kva_norm_ = add_norm(ps, p + "kv_a_layernorm.weight", kvr_);
  w_kvb_ = add_matrix(ps, p + "kv_b_proj.weight", H_ * (dn_ + dv_), kvr_, sd);
  w_o_ = add_matrix(ps, p + "o_proj.weight", D_, H_ * dv_, sd);
}

namespace {

// k [N, H, dn+dr] and v [N, H, dv] from kvb [N, H, dn+dv] and the shared k_pe [N, dr].
template <class T>
void assemble_kv(const T* kvb, const T* kpe, int64_t N, int64_t H, int64_t dn, int64_t dr,
                 int64_t dv, T* k, T* v) {
#pragma omp parallel for
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h) {
      const T* src = kvb + (n * H + h) * (dn + dv);
      T* kd = k + (n * H + h) * (dn + dr);
      std::memcpy(kd, src, dn * sizeof(T));
      std::memcpy(kd + dn, kpe + n * dr, dr * sizeof(T));
      std::memcpy(v + (n * H + h) * dv, src + dn, dv * sizeof(T));
    }
}

// The inverse: dkvb per head [dk_nope | dv], and dk_pe = sum over heads of dk's rope part.
template <class T>
void split_dkv(const T* dk, const T* dvv, int64_t N, int64_t H, int64_t dn, int64_t dr,
               int64_t dv, T* dkvb, T* dkpe) {
#pragma omp parallel for
  for (int64_t n = 0; n < N; ++n) {
    T* pe = dkpe + n * dr;
    for (int64_t j = 0; j < dr; ++j) pe[j] = 0;
    for (int64_t h = 0; h < H; ++h) {
      const T* s = dk + (n * H + h) * (dn + dr);
      T* d = dkvb + (n * H + h) * (dn + dv);
      std::memcpy(d, s, dn * sizeof(T));
      std::memcpy(d + dn, dvv + (n * H + h) * dv, dv * sizeof(T));
      for (int64_t j = 0; j < dr; ++j) pe[j] += s[dn + j];
    }
  }
}

}  // namespace

void Mla::forward(int slot, const Tensor& a, const Tensor& out) {
  BumpArena& ar = env_.acts.slot(slot);
  Saved& s = slot_state(saved_, slot);
  const int64_t N = a.rows(), T = env_.seq_len, B = N / T;
  FLOT_CHECK(N % T == 0, "{} rows are not whole sequences of {}", N, T);
  const DType dt = env_.params.dtype();
  auto P = [&](int id) { return env_.params.param(id); };
  auto& scratch = env_.acts.scratch();
  ScratchScope scope(scratch);
  // Tensors that only feed a Linear live in scratch when the precision keeps its own copy.
  BumpArena& linear_only = env_.precision == Precision::fp32 ? ar : scratch;
  s.a = keep_linear_input(env_, a, ar);

  s.q = ar.alloc(dt, {N, H_, dn_ + dr_});
  if (qr_ > 0) {
    s.cq = ar.alloc(dt, {N, qr_});
    s.rstd_q = ar.alloc(dt, {N});
    Tensor cqn = linear_only.alloc(dt, {N, qr_});
    linear_forward(env_, s.a, P(w_qa_), s.cq);
    kernels::rmsnorm_forward(env_.ctx, s.cq, P(w_qa_norm_), eps_, cqn, s.rstd_q);
    s.cqn = keep_linear_input(env_, cqn, ar);
    linear_forward(env_, s.cqn, P(w_qb_), s.q);
  } else {
    linear_forward(env_, s.a, P(w_q_), s.q);
  }
  kernels::rope(env_.ctx, s.q, T, dn_, dr_, theta_, false);

  // The fused kv_a projection is two row blocks of one weight: c_kv rows, then k_pe rows.
  Tensor wkva = P(w_kva_);
  s.ckv = ar.alloc(dt, {N, kvr_});
  s.rstd_kv = ar.alloc(dt, {N});
  Tensor ckvn = linear_only.alloc(dt, {N, kvr_});
  Tensor kpe = scratch.alloc(dt, {N, 1, dr_});
  linear_forward(env_, s.a, wkva.slice(0, kvr_), s.ckv);
  linear_forward(env_, s.a, wkva.slice(kvr_, kvr_ + dr_), kpe);
  kernels::rope(env_.ctx, kpe, T, 0, dr_, theta_, false);
  kernels::rmsnorm_forward(env_.ctx, s.ckv, P(w_kva_norm_), eps_, ckvn, s.rstd_kv);
  s.ckvn = keep_linear_input(env_, ckvn, ar);
  Tensor kvb = scratch.alloc(dt, {N, H_ * (dn_ + dv_)});
  linear_forward(env_, s.ckvn, P(w_kvb_), kvb);

  s.k = ar.alloc(dt, {N, H_, dn_ + dr_});
  s.v = ar.alloc(dt, {N, H_, dv_});
  if (dt == DType::f32)
    assemble_kv(kvb.ptr<float>(), kpe.ptr<float>(), N, H_, dn_, dr_, dv_, s.k.ptr<float>(), s.v.ptr<float>());
  else
    assemble_kv(kvb.ptr<double>(), kpe.ptr<double>(), N, H_, dn_, dr_, dv_, s.k.ptr<double>(), s.v.ptr<double>());

  s.o = ar.alloc(dt, {N, H_, dv_});
  s.lse = ar.alloc(dt, {B, H_, T});
  kernels::attention_forward(env_.ctx, s.q, s.k, s.v, T, scale_, s.o, s.lse);
  // o stays FP32 for the attention core's backward; the projection converts it on the fly.
  linear_forward(env_, s.o.reshape({N, H_ * dv_}), P(w_o_), out);
}

void Mla::backward_input(int slot, const Tensor& dout, const Tensor& da) {
  Context& ctx = env_.ctx;
  BumpArena& ar = env_.acts.slot(slot);
  Saved& s = saved_.at(slot);
  const int64_t N = s.a.rows(), T = env_.seq_len;
  const DType dt = env_.params.dtype();
  auto P = [&](int id) { return env_.params.param(id); };
  auto& scratch = env_.acts.scratch();
  ScratchScope scope(scratch);

  s.dout = dout;  // the caller keeps it until backward_weight
  Tensor d_o = scratch.alloc(dt, {N, H_, dv_});
  linear_backward_input(env_, dout, P(w_o_), d_o.reshape({N, H_ * dv_}));

  s.dq = ar.alloc(dt, {N, H_, dn_ + dr_});
  Tensor dk = scratch.alloc(dt, {N, H_, dn_ + dr_});
  Tensor dv = scratch.alloc(dt, {N, H_, dv_});
  kernels::attention_backward(ctx, d_o, s.q, s.k, s.v, s.o, s.lse, T, scale_, s.dq, dk, dv);

  s.dkvb = ar.alloc(dt, {N, H_ * (dn_ + dv_)});
  s.dkpe = ar.alloc(dt, {N, 1, dr_});
  if (dt == DType::f32)
    split_dkv(dk.ptr<float>(), dv.ptr<float>(), N, H_, dn_, dr_, dv_, s.dkvb.ptr<float>(), s.dkpe.ptr<float>());
  else
    split_dkv(dk.ptr<double>(), dv.ptr<double>(), N, H_, dn_, dr_, dv_, s.dkvb.ptr<double>(), s.dkpe.ptr<double>());
  kernels::rope(ctx, s.dkpe, T, 0, dr_, theta_, true);

  s.dckvn = ar.alloc(dt, {N, kvr_});
  linear_backward_input(env_, s.dkvb, P(w_kvb_), s.dckvn);
  s.dckv = ar.alloc(dt, {N, kvr_});
  kernels::rmsnorm_backward_input(ctx, s.dckvn, s.ckv, P(w_kva_norm_), s.rstd_kv, s.dckv);

  kernels::rope(ctx, s.dq, T, dn_, dr_, theta_, true);
  if (qr_ > 0) {
    s.dcqn = ar.alloc(dt, {N, qr_});
    s.dcq = ar.alloc(dt, {N, qr_});
    linear_backward_input(env_, s.dq.reshape({N, H_ * (dn_ + dr_)}), P(w_qb_), s.dcqn);
    kernels::rmsnorm_backward_input(ctx, s.dcqn, s.cq, P(w_qa_norm_), s.rstd_q, s.dcq);
    linear_backward_input(env_, s.dcq, P(w_qa_), da);
  } else {
    linear_backward_input(env_, s.dq.reshape({N, H_ * (dn_ + dr_)}), P(w_q_), da);
  }
  Tensor wkva = P(w_kva_);
  linear_backward_input(env_, s.dckv, wkva.slice(0, kvr_), da, true);
  linear_backward_input(env_, s.dkpe.reshape({N, dr_}), wkva.slice(kvr_, kvr_ + dr_), da, true);
}

void Mla::backward_weight(int slot) {
  Context& ctx = env_.ctx;
  Saved& s = saved_.at(slot);
  const int64_t N = s.a.rows();
  auto G = [&](int id) { return env_.params.grad(id); };
  linear_backward_weight(env_, s.dout, s.o.reshape({N, H_ * dv_}), G(w_o_));
  linear_backward_weight(env_, s.dkvb, s.ckvn, G(w_kvb_));
  kernels::rmsnorm_backward_weight(ctx, s.dckvn, s.ckv, s.rstd_kv, G(w_kva_norm_));
  Tensor gkva = G(w_kva_);
  linear_backward_weight(env_, s.dckv, s.a, gkva.slice(0, kvr_));
  linear_backward_weight(env_, s.dkpe.reshape({N, dr_}), s.a, gkva.slice(kvr_, kvr_ + dr_));
  Tensor dq2 = s.dq.reshape({N, H_ * (dn_ + dr_)});
  if (qr_ > 0) {
    linear_backward_weight(env_, dq2, s.cqn, G(w_qb_));
    kernels::rmsnorm_backward_weight(ctx, s.dcqn, s.cq, s.rstd_q, G(w_qa_norm_));
    linear_backward_weight(env_, s.dcq, s.a, G(w_qa_));
  } else {
    linear_backward_weight(env_, dq2, s.a, G(w_q_));
  }
  s = Saved{};
}

std::unique_ptr<Layer> make_attention_layer(LayerEnv& env, const ModelConfig& m,
                                            const std::string& prefix) {
  return std::make_unique<ResidualLayer>(env, prefix + "input_layernorm.weight", m.hidden_size,
                                         m.rms_norm_eps,
                                         std::make_unique<Mla>(env, m, prefix + "self_attn."));
}

}  // namespace core
