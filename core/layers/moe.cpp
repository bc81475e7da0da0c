// DeepSeekMoE: gate -> dispatch -> grouped experts -> combine, forward and backward, with the
// expert-parallel exchanges between phases.
#include "core/layers/moe.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/ops.hpp"

namespace core {

Moe::Moe(LayerEnv& env, const ModelConfig& m, const std::string& prefix, int index)
    : index_(index), env_(env) {
  const auto& moe = m.moe;
  gate_.num_experts = moe.num_experts;
  gate_.top_k = moe.experts_per_token;
  gate_.num_groups = moe.num_groups;
  gate_.groups_per_token = moe.groups_per_token;
  gate_.route_scale = moe.route_scale;
  D_ = m.hidden_size;
  F_ = moe.expert_intermediate_size;
  if (env.ep) {
    ep_size_ = env.ep->size();
    ep_rank_ = env.ep->rank();
  }
  FLOT_CHECK(moe.num_experts % ep_size_ == 0, "{} experts over {} expert-parallel ranks",
             moe.num_experts, ep_size_);
  local_ = moe.num_experts / ep_size_;
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
  w13.shape = {local_, 2 * F_, D_};
  w13.stack_first = ep_rank_ * local_;  // slices are named by their global expert id
  w13.std = m.init_std;
  w13_ = ps.add(w13);
  ParamSpec w2 = w13;
  w2.name = p + "experts.{}.down_proj.weight";
  w2.shape = {local_, D_, F_};
  w2_ = ps.add(w2);
  if (moe.num_shared_experts > 0)
    shared_ = std::make_unique<SwigluMlp>(env, p + "shared_experts.", D_,
                                          F_ * moe.num_shared_experts, m.init_std);
  loads_.assign(E, 0);
  saved_.resize(env.acts.slots());
  recv_.resize(env.acts.slots());
}

void Moe::forward(int slot, const Tensor& a, const Tensor& out) {
  for (int p = 0; p < phases(); ++p) forward_phase(p, slot, a, out);
}

void Moe::backward_input(int slot, const Tensor& dout, const Tensor& da) {
  for (int p = 0; p < phases(); ++p) backward_phase(p, slot, dout, da);
}

void Moe::forward_phase(int phase, int slot, const Tensor& a, const Tensor& out) {
  switch (phase) {
    case 0:
      gate(slot, a);
      dispatch_start(slot);
      return;
    case 1:
      dispatch_finish(slot);
      experts(slot);
      combine_start(slot);
      return;
    default:
      combine_finish(slot, out);
  }
}

void Moe::backward_phase(int phase, int slot, const Tensor& dout, const Tensor& da) {
  switch (phase) {
    case 0:
      combine_backward(slot, dout);
      return;
    case 1:
      experts_backward(slot);
      return;
    default:
      dispatch_backward(slot, dout, da);
      gate_backward(slot, da);
  }
}

void Moe::reorder(const Tensor& in, const Tensor& map, const Tensor& out) {
  kernels::moe_permute(env_.ctx, in, map, /*top_k=*/1, out);
}

parallel::HandlePtr Moe::exchange(const Tensor& in, const std::vector<int64_t>& send,
                                  const Tensor& out, const std::vector<int64_t>& recv) {
  return env_.ep->all_to_all_v(in, send, out, recv, parallel::Traffic::expert_a2a);
}

void Moe::gate(int slot, const Tensor& a) {
  Context& ctx = env_.ctx;
  Saved& s = saved_.at(slot);
  FLOT_CHECK(!s.exchange, "MoE layer {}: slot {} reused while its exchange is in flight", index_, slot);
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
  const SlotInfo& info = env_.slot(slot);
  if (info.training) {
    const int32_t* off = s.offsets.ptr<int32_t>();
    for (int64_t e = 0; e < E; ++e) loads_[e] += off[e + 1] - off[e];
  }
  if (balance_weight_ > 0) {
    s.aux_loss = kernels::balance_loss_forward(ctx, s.scores, static_cast<int>(k), segment(N),
                                               balance_weight_);
    s.aux_grad = info.aux_grad_scale;
  }
}

void Moe::dispatch_start(int slot) {
  Saved& s = saved_.at(slot);
  const int64_t N = s.a.rows(), k = gate_.top_k;
  s.xs = env_.acts.slot(slot).alloc(env_.params.dtype(), {N * k, D_});
  kernels::moe_permute(env_.ctx, s.a, s.src, static_cast<int>(k), s.xs);
  if (!parallel()) {
    s.xe = s.xs;
    s.local_offsets = s.offsets;
    return;
  }
  // The permuted rows are ordered by global expert, and rank r owns a contiguous block of
  // experts, so each destination's rows are one segment.
  const int32_t* off = s.offsets.ptr<int32_t>();
  s.send_rows.assign(ep_size_, 0);
  s.send_hdr.assign(static_cast<size_t>(ep_size_) * local_, 0);
  s.recv_hdr.assign(s.send_hdr.size(), 0);
  s.recv_rows.assign(ep_size_, 0);
  for (int r = 0; r < ep_size_; ++r)
    for (int e = 0; e < local_; ++e) {
      const int g = r * local_ + e;
      s.send_hdr[g] = off[g + 1] - off[g];
      s.send_rows[r] += s.send_hdr[g];
    }
  parallel::Communicator& ep = *env_.ep;
  const int tag = ep.reserve_tags(2);
  const std::vector<int64_t> one(ep_size_, 1);
  auto counts = ep.all_to_all_v(Tensor::of(s.send_hdr.data(), {ep_size_, local_}), one,
                                Tensor::of(s.recv_hdr.data(), {ep_size_, local_}), one,
                                parallel::Traffic::expert_a2a, tag);
  // Runs on the communication thread once the counts have arrived: only this slot's state and
  // receive buffer are touched, and the compute thread leaves both alone until it waits.
  Saved* sp = &s;
  GrowBuffer* buf = &recv_.at(slot);
  const DType dt = env_.params.dtype();
  s.exchange = ep.then(std::move(counts), [this, sp, buf, dt, tag] {
    int64_t total = 0;
    for (int r = 0; r < ep_size_; ++r) {
      sp->recv_rows[r] = 0;
      for (int e = 0; e < local_; ++e) sp->recv_rows[r] += sp->recv_hdr[r * local_ + e];
      total += sp->recv_rows[r];
    }
    return env_.ep->all_to_all_v(sp->xs, sp->send_rows, buf->view(dt, {total, D_}), sp->recv_rows,
                                 parallel::Traffic::expert_a2a, tag + 1);
  }, parallel::Traffic::expert_a2a);
}

void Moe::dispatch_finish(int slot) {
  if (!parallel()) return;
  Saved& s = saved_.at(slot);
  s.exchange->wait();
  s.exchange.reset();
  BumpArena& ar = env_.acts.slot(slot);
  int64_t R = 0;
  for (int64_t v : s.recv_rows) R += v;
  // Source-major [source rank][local expert] rows -> expert-major [local expert][source rank].
  s.local_offsets = ar.alloc(DType::i32, {local_ + 1});
  s.to_src = ar.alloc(DType::i32, {R});
  s.to_exp = ar.alloc(DType::i32, {R});
  int32_t* lo = s.local_offsets.ptr<int32_t>();
  int32_t* to_src = s.to_src.ptr<int32_t>();
  int32_t* to_exp = s.to_exp.ptr<int32_t>();
  std::vector<int64_t> src_start(static_cast<size_t>(ep_size_) * local_);
  int64_t at = 0;
  for (int r = 0; r < ep_size_; ++r)
    for (int e = 0; e < local_; ++e) {
      src_start[r * local_ + e] = at;
      at += s.recv_hdr[r * local_ + e];
    }
  int64_t row = 0;
  for (int e = 0; e < local_; ++e) {
    lo[e] = static_cast<int32_t>(row);
    for (int r = 0; r < ep_size_; ++r)
      for (int64_t i = 0; i < s.recv_hdr[r * local_ + e]; ++i, ++row) {
        to_src[row] = static_cast<int32_t>(src_start[r * local_ + e] + i);
        to_exp[to_src[row]] = static_cast<int32_t>(row);
      }
  }
  lo[local_] = static_cast<int32_t>(row);
  s.xe = ar.alloc(env_.params.dtype(), {R, D_});
  reorder(recv_.at(slot).view(env_.params.dtype(), {R, D_}), s.to_src, s.xe);
}

void Moe::experts(int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t rows = s.xe.rows();
  s.he = ar.alloc(dt, {rows, 2 * F_});
  s.ge = ar.alloc(dt, {rows, F_});
  s.ye = ar.alloc(dt, {rows, D_});
  kernels::grouped_gemm(env_.ctx, s.xe, env_.params.param(w13_), true, s.local_offsets, s.he);
  kernels::swiglu_forward(env_.ctx, s.he, s.ge);
  kernels::grouped_gemm(env_.ctx, s.ge, env_.params.param(w2_), true, s.local_offsets, s.ye);
}

void Moe::combine_start(int slot) {
  Saved& s = saved_.at(slot);
  if (!parallel()) {
    s.ys = s.ye;
    return;
  }
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  // Rows in flight must outlive the phase, so they live in the slot, not the scratch.
  Tensor back = ar.alloc(dt, {s.ye.rows(), D_});
  reorder(s.ye, s.to_exp, back);
  s.ys = ar.alloc(dt, {s.xs.rows(), D_});
  s.exchange = exchange(back, s.recv_rows, s.ys, s.send_rows);
}

void Moe::combine_finish(int slot, const Tensor& out) {
  Saved& s = saved_.at(slot);
  // The shared experts run while the combine travels.
  if (shared_)
    shared_->forward(slot, s.a, out, /*accumulate=*/false);
  else
    kernels::fill(out, 0.0);
  if (s.exchange) {
    s.exchange->wait();
    s.exchange.reset();
  }
  kernels::moe_combine(env_.ctx, s.ys, s.weights, s.pos, out);
}

void Moe::combine_backward(int slot, const Tensor& dout) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  s.dys = ar.alloc(dt, {s.ys.rows(), D_});
  s.dweights = ar.alloc(dt, {s.a.rows(), gate_.top_k});
  kernels::moe_combine_backward(env_.ctx, dout, s.ys, s.weights, s.pos, s.dys, s.dweights);
  if (!parallel()) {
    s.dye = s.dys;
    return;
  }
  // The gradient of combine travels like a dispatch, with the counts known from the forward;
  // it arrives source-major and experts_backward reorders it.
  s.dye = ar.alloc(dt, {s.xe.rows(), D_});
  s.exchange = exchange(s.dys, s.send_rows, s.dye, s.recv_rows);
}

void Moe::experts_backward(int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t rows = s.xe.rows();
  if (parallel()) {
    s.exchange->wait();
    s.exchange.reset();
    const Tensor arrived = s.dye;  // source-major
    s.dye = ar.alloc(dt, {rows, D_});
    reorder(arrived, s.to_src, s.dye);
  }
  ScratchScope scope(env_.acts.scratch());
  Tensor dg = env_.acts.scratch().alloc(dt, {rows, F_});
  kernels::grouped_gemm(env_.ctx, s.dye, env_.params.param(w2_), false, s.local_offsets, dg);
  s.dhe = ar.alloc(dt, {rows, 2 * F_});
  kernels::swiglu_backward(env_.ctx, dg, s.he, s.dhe);
  s.dxe = ar.alloc(dt, {rows, D_});
  kernels::grouped_gemm(env_.ctx, s.dhe, env_.params.param(w13_), false, s.local_offsets, s.dxe);
  if (!parallel()) {
    s.dxs = s.dxe;
    return;
  }
  // The gradient of dispatch travels like a combine.
  Tensor back = ar.alloc(dt, {rows, D_});
  reorder(s.dxe, s.to_exp, back);
  s.dxs = ar.alloc(dt, {s.xs.rows(), D_});
  s.exchange = exchange(back, s.recv_rows, s.dxs, s.send_rows);
}

void Moe::dispatch_backward(int slot, const Tensor& dout, const Tensor& da) {
  Saved& s = saved_.at(slot);
  // The shared experts' backward runs while the dispatch gradient travels.
  if (shared_)
    shared_->backward_input(slot, dout, da, /*accumulate=*/false);
  else
    kernels::fill(da, 0.0);
  if (s.exchange) {
    s.exchange->wait();
    s.exchange.reset();
  }
  kernels::moe_permute_backward(env_.ctx, s.dxs, s.pos, gate_.top_k, da);
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
  kernels::grouped_gemm_wgrad(ctx, s.dye, s.ge, s.local_offsets, G(w2_));
  kernels::grouped_gemm_wgrad(ctx, s.dhe, s.xe, s.local_offsets, G(w13_));
  linear_backward_weight(ctx, s.dlogits, s.a, G(w_gate_));
  if (shared_) shared_->backward_weight(slot);
  double aux = s.aux_loss;
  s = Saved{};
  s.aux_loss = aux;
}

std::unique_ptr<Layer> make_moe_layer(LayerEnv& env, const ModelConfig& m, const std::string& prefix,
                                      int index, Moe** moe) {
  auto inner = std::make_unique<Moe>(env, m, prefix, index);
  if (moe) *moe = inner.get();
  return std::make_unique<ResidualLayer>(env, prefix + "post_attention_layernorm.weight",
                                         m.hidden_size, m.rms_norm_eps, std::move(inner));
}

}  // namespace core
