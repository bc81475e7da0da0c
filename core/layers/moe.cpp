// DeepSeekMoE: gate -> dispatch -> grouped experts -> combine, forward and backward, with the
// expert-parallel exchanges between phases.
#include "core/layers/moe.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/bf16_ops.hpp"
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
      // The shared experts' and the gate's backward need nothing from the exchanges: they run
      // while the combine gradient travels, the exchange whose cover in an overlapped pair is
      // otherwise only the other micro-batch's expert forward.
      if (shared_)
        shared_->backward_input(slot, dout, da, /*accumulate=*/false);
      else
        kernels::fill(da, 0.0);
      gate_backward(slot, da);
      experts_backward(slot);
      return;
    default:
      dispatch_backward(slot, da);
  }
}

void Moe::reorder(const Tensor& in, const Tensor& map, const Tensor& out) {
  kernels::moe_permute(env_.ctx, in, map, /*top_k=*/1, out);
}

Tensor Moe::combine_rows(const Tensor& x, BumpArena& arena) {
  if (env_.precision == Precision::fp32) return x;
  Tensor b = arena.alloc(DType::bf16, {x.rows(), x.cols()});
  kernels::cast(env_.ctx, x, b);
  return b;
}

Tensor Moe::widen(const Tensor& rows) {
  if (rows.dtype != DType::bf16) return rows;
  Tensor f = env_.acts.scratch().alloc(DType::f32, {rows.rows(), rows.cols()});
  kernels::cast(env_.ctx, rows, f);
  return f;
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
  // The gate stays FP32 in every precision (the recipe): kernels::gemm, not the Linear policy.
  kernels::gemm(ctx, s.a, false, env_.params.param(w_gate_), true, logits);
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
  s.qa = keep_linear_input(env_, a, ar);
}

void Moe::dispatch_start(int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  BumpArena& scratch = env_.acts.scratch();
  const int64_t N = s.a.rows(), k = gate_.top_k;
  ScratchScope scope(scratch);
  // The payload: the tokens' rows in the precision's form (FP8: codes and scales side by side).
  const Tensor rows = pack_operand(env_, s.qa, scratch);
  const bool packed = rows.dtype == DType::u8;
  if (!parallel()) {
    Tensor xs = (packed ? scratch : ar).alloc(rows.dtype, {N * k, rows.cols()});
    kernels::moe_permute(env_.ctx, rows, s.src, static_cast<int>(k), xs);
    s.xe = unpack_operand(env_, xs, D_, ar);
    s.local_offsets = s.offsets;
    s.rows.offsets = s.offsets;
    return;
  }
  s.xs = ar.alloc(rows.dtype, {N * k, rows.cols()});
  kernels::moe_permute(env_.ctx, rows, s.src, static_cast<int>(k), s.xs);
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
  const DType wire = s.xs.dtype;
  const int64_t width = s.xs.cols();
  s.exchange = ep.then(std::move(counts), [this, sp, buf, wire, width, tag] {
    int64_t total = 0;
    for (int r = 0; r < ep_size_; ++r) {
      sp->recv_rows[r] = 0;
      for (int e = 0; e < local_; ++e) sp->recv_rows[r] += sp->recv_hdr[r * local_ + e];
      total += sp->recv_rows[r];
    }
    return env_.ep->all_to_all_v(sp->xs, sp->send_rows, buf->view(wire, {total, width}),
                                 sp->recv_rows, parallel::Traffic::expert_a2a, tag + 1);
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
  // Each source's rows (source-major, so one block) and their split by expert.
  s.rows.offsets = s.local_offsets;
  s.rows.source_order = s.to_exp;
  for (int r = 0; r < ep_size_; ++r) {
    s.rows.source_begin.push_back(src_start[static_cast<size_t>(r) * local_]);
    Tensor so = ar.alloc(DType::i32, {local_ + 1});
    int32_t* o = so.ptr<int32_t>();
    o[0] = 0;
    for (int e = 0; e < local_; ++e)
      o[e + 1] = o[e] + static_cast<int32_t>(s.recv_hdr[r * local_ + e]);
    s.rows.source_offsets.push_back(so);
  }
  s.rows.source_begin.push_back(R);
  ScratchScope scope(env_.acts.scratch());
  const Tensor arrived = recv_.at(slot).view(s.xs.dtype, {R, s.xs.cols()});
  const bool packed = arrived.dtype == DType::u8;
  Tensor ordered = (packed ? env_.acts.scratch() : ar).alloc(arrived.dtype, {R, arrived.cols()});
  reorder(arrived, s.to_src, ordered);
  s.xe = unpack_operand(env_, ordered, D_, ar);
}

void Moe::experts(int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  const DType dt = env_.params.dtype();
  const int64_t rows = s.xe.rows();
  ScratchScope scope(env_.acts.scratch());
  // ge and ye only feed a Linear or the combine: in low precision their copies are what stays.
  BumpArena& converted = env_.precision == Precision::fp32 ? ar : env_.acts.scratch();
  s.he = ar.alloc(dt, {rows, 2 * F_});
  experts_forward(env_, s.xe, env_.params.param(w13_), s.local_offsets, s.he);
  Tensor ge = converted.alloc(dt, {rows, F_});
  kernels::swiglu_forward(env_.ctx, s.he, ge);
  s.ge = keep_linear_input(env_, ge, ar);
  Tensor ye = converted.alloc(dt, {rows, D_});
  experts_forward(env_, s.ge, env_.params.param(w2_), s.local_offsets, ye);
  s.ye = combine_rows(ye, ar);
}

void Moe::combine_start(int slot) {
  Saved& s = saved_.at(slot);
  if (!parallel()) {
    s.ys = s.ye;
    return;
  }
  BumpArena& ar = env_.acts.slot(slot);
  // Rows in flight must outlive the phase, so they live in the slot, not the scratch.
  Tensor back = ar.alloc(s.ye.dtype, {s.ye.rows(), D_});
  reorder(s.ye, s.to_exp, back);
  s.ys = ar.alloc(s.ye.dtype, {s.xs.rows(), D_});
  s.exchange = exchange(back, s.recv_rows, s.ys, s.send_rows);
}

void Moe::combine_finish(int slot, const Tensor& out) {
  Saved& s = saved_.at(slot);
  // The shared experts run while the combine travels.
  if (shared_)
    shared_->forward(slot, s.qa, out, /*accumulate=*/false);
  else
    kernels::fill(out, 0.0);
  if (s.exchange) {
    s.exchange->wait();
    s.exchange.reset();
  }
  ScratchScope scope(env_.acts.scratch());
  kernels::moe_combine(env_.ctx, widen(s.ys), s.weights, s.pos, out);
}

void Moe::combine_backward(int slot, const Tensor& dout) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  BumpArena& scratch = env_.acts.scratch();
  const DType dt = env_.params.dtype();
  const Precision p = env_.precision;
  ScratchScope scope(scratch);
  Tensor dys = (p == Precision::fp32 ? ar : scratch).alloc(dt, {s.ys.rows(), D_});
  s.dweights = ar.alloc(dt, {s.a.rows(), gate_.top_k});
  kernels::moe_combine_backward(env_.ctx, dout, widen(s.ys), s.weights, s.pos, dys, s.dweights);
  // The gradient of combine travels like a dispatch, converted before it leaves in every layout
  // (FP8 for the down projection's data gradient), with the counts known from the forward; it
  // arrives source-major and experts_backward reorders it.
  if (!parallel()) {
    s.dye = keep_linear_input(env_, dys, ar);
    return;
  }
  s.dys = pack_operand(env_, keep_linear_input(env_, dys, p == Precision::fp8 ? scratch : ar), ar);
  s.dye_in = ar.alloc(s.dys.dtype, {s.xe.rows(), s.dys.cols()});
  s.exchange = exchange(s.dys, s.send_rows, s.dye_in, s.recv_rows);
}

void Moe::experts_backward(int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = env_.acts.slot(slot);
  BumpArena& scratch = env_.acts.scratch();
  const DType dt = env_.params.dtype();
  const int64_t rows = s.xe.rows();
  ScratchScope scope(scratch);
  if (parallel()) {
    s.exchange->wait();
    s.exchange.reset();
    const bool packed = s.dye_in.dtype == DType::u8;
    Tensor ordered = (packed ? scratch : ar).alloc(s.dye_in.dtype, {rows, s.dye_in.cols()});
    reorder(s.dye_in, s.to_src, ordered);
    s.dye = unpack_operand(env_, ordered, D_, ar);
  }
  Tensor dg = scratch.alloc(dt, {rows, F_});
  experts_backward_input(env_, s.dye, env_.params.param(w2_), s.local_offsets, dg);
  s.dhe = ar.alloc(dt, {rows, 2 * F_});
  kernels::swiglu_backward(env_.ctx, dg, s.he, s.dhe);
  Tensor dxe = (env_.precision == Precision::fp32 ? ar : scratch).alloc(dt, {rows, D_});
  experts_backward_input(env_, s.dhe, env_.params.param(w13_), s.local_offsets, dxe);
  if (!parallel()) {
    s.dxs = combine_rows(dxe, ar);
    return;
  }
  // The gradient of dispatch travels like a combine.
  const Tensor rows_out = combine_rows(dxe, scratch);
  Tensor back = ar.alloc(rows_out.dtype, {rows, D_});
  reorder(rows_out, s.to_exp, back);
  s.dxs = ar.alloc(rows_out.dtype, {s.ys.rows(), D_});
  s.exchange = exchange(back, s.recv_rows, s.dxs, s.send_rows);
}

void Moe::dispatch_backward(int slot, const Tensor& da) {
  Saved& s = saved_.at(slot);
  if (s.exchange) {
    s.exchange->wait();
    s.exchange.reset();
  }
  ScratchScope scope(env_.acts.scratch());
  kernels::moe_permute_backward(env_.ctx, widen(s.dxs), s.pos, gate_.top_k, da);
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
  kernels::gemm(env_.ctx, s.dlogits, false, env_.params.param(w_gate_), false, da, 1.0, 1.0);
}

void Moe::backward_weight(int slot) {
  Context& ctx = env_.ctx;
  Saved& s = saved_.at(slot);
  auto G = [&](int id) { return env_.params.grad(id); };
  experts_backward_weight(env_, s.dye, s.ge, s.rows, G(w2_));
  experts_backward_weight(env_, s.dhe, s.xe, s.rows, G(w13_));
  kernels::gemm(ctx, s.dlogits, true, s.a, false, G(w_gate_), 1.0, 1.0);
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
