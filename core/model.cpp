// Model assembly, the micro-batch forward / backward walk, and the FLOP count.
#include "core/model.hpp"

#include <cstring>

#include "core/layers/attention.hpp"
#include "core/layers/mlp.hpp"
#include "kernels/ops.hpp"

namespace core {

Model::Model(const Config& cfg, Context& ctx, DType dtype, int slots)
    : cfg_(cfg), params_(dtype), acts_(slots), env_{ctx, params_, acts_, cfg.train.seq_len} {
  const ModelConfig& m = cfg.model;
  embed_ = std::make_unique<Embedding>(env_, m);
  for (int l = 0; l < m.num_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    layers_.push_back(make_attention_layer(env_, m, prefix));
    if (l < m.first_dense_layers) {
      layers_.push_back(make_ffn_layer(env_, m, prefix));
    } else {
      Moe* moe = nullptr;
      layers_.push_back(make_moe_layer(env_, m, prefix, &moe));
      moe_.push_back(moe);
    }
  }
  head_ = std::make_unique<HeadLoss>(env_, m, "model.norm.weight", -1);
  for (int k = 1; k <= m.mtp.depth; ++k) {
    int index = m.num_layers + k - 1;
    mtp_.push_back(std::make_unique<MtpModule>(env_, m, index));
    if (Moe* moe = mtp_.back()->moe()) moe_.push_back(moe);
    mtp_heads_.push_back(std::make_unique<HeadLoss>(
        env_, m, "model.layers." + std::to_string(index) + ".shared_head.norm.weight",
        head_->head_id()));
  }
  params_.finalize(dtype_from_name(cfg.optim.moment_dtype) == DType::bf16 ? DType::bf16 : dtype);
}

MicroLosses Model::forward(int slot, const data::MicroBatch& mb, const LossScales& scales,
                           bool training) {
  Saved& s = slot_state(saved_, slot);
  BumpArena& ar = acts_.slot(slot);
  const DType dt = params_.dtype();
  const int64_t N = mb.batch * mb.seq_len, D = cfg_.model.hidden_size;
  const int depth = cfg_.model.mtp.depth;
  FLOT_CHECK(mb.seq_len == env_.seq_len, "micro-batch seq_len {} != model {}", mb.seq_len, env_.seq_len);
  FLOT_CHECK(static_cast<int>(mb.targets.size()) >= depth + 1, "micro-batch has {} target rows, need {}",
             mb.targets.size(), depth + 1);
  env_.count_loads = training;
  env_.aux_grad_scale = scales.aux;
  s.scales = scales;

  auto tokens = [&](const std::vector<int32_t>& v) {
    Tensor t = ar.alloc(DType::i32, {N});
    std::memcpy(t.data, v.data(), N * sizeof(int32_t));
    return t;
  };
  s.inputs = tokens(mb.inputs);
  s.targets.clear();
  for (int k = 0; k <= depth; ++k) s.targets.push_back(tokens(mb.targets[k]));

  s.x0 = ar.alloc(dt, {N, D});
  embed_->forward(s.inputs, s.x0);
  s.outs.clear();
  Tensor h = s.x0;
  for (auto& layer : layers_) {
    Tensor out = ar.alloc(dt, {N, D});
    layer->forward(slot, h, out);
    s.outs.push_back(out);
    h = out;
  }
  MicroLosses L;
  L.lm_sum = head_->forward(slot, h, s.targets[0], &L.lm_tokens);
  s.mtp_emb.clear();
  s.mtp_out.clear();
  for (int k = 1; k <= depth; ++k) {
    // module k sees token i + k: the window shifted by k, which is the (k-1)-th target row
    Tensor e = ar.alloc(dt, {N, D});
    embed_->forward(s.targets[k - 1], e);
    Tensor out = ar.alloc(dt, {N, D});
    mtp_[k - 1]->forward(slot, e, h, out);
    int64_t count = 0;
    L.mtp_sum.push_back(mtp_heads_[k - 1]->forward(slot, out, s.targets[k], &count));
    L.mtp_tokens.push_back(count);
    s.mtp_emb.push_back(e);
    s.mtp_out.push_back(out);
    h = out;
  }
  for (Moe* moe : moe_) L.aux += moe->balance_loss(slot);
  return L;
}

void Model::backward_input(int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = acts_.slot(slot);
  const DType dt = params_.dtype();
  const int64_t N = s.x0.rows(), D = s.x0.cols();
  const int depth = static_cast<int>(mtp_.size());

  // The MTP chain, last depth first: the gradient of each module's input hidden flows into the
  // previous depth (finally the main model's last hidden state).
  Tensor dh_carry;  // gradient arriving at the current depth's output from the depth above
  for (int k = depth; k >= 1; --k) {
    Tensor dout = ar.alloc(dt, {N, D});
    mtp_heads_[k - 1]->backward(slot, s.scales.mtp, dout);
    if (!dh_carry.empty()) kernels::axpy(1.0, dh_carry, dout);
    Tensor de = ar.alloc(dt, {N, D});
    Tensor dh = ar.alloc(dt, {N, D});
    mtp_[k - 1]->backward_input(slot, dout, de, dh);
    s.mtp_emb[k - 1] = de;  // the embedding gradient replaces the (no longer needed) embedding
    dh_carry = dh;
  }
  Tensor dh = ar.alloc(dt, {N, D});
  head_->backward(slot, s.scales.lm, dh);
  if (!dh_carry.empty()) kernels::axpy(1.0, dh_carry, dh);
  for (int i = static_cast<int>(layers_.size()) - 1; i >= 0; --i) {
    Tensor dx = ar.alloc(dt, {N, D});
    layers_[i]->backward_input(slot, dh, dx);
    dh = dx;
  }
  s.x0 = dh;  // the embedding output gradient, for backward_weight
}

void Model::backward_weight(int slot) {
  Saved& s = saved_.at(slot);
  for (auto& layer : layers_) layer->backward_weight(slot);
  for (auto& m : mtp_) m->backward_weight(slot);
  embed_->backward_weight(s.x0, s.inputs);
  for (size_t k = 0; k < mtp_.size(); ++k) embed_->backward_weight(s.mtp_emb[k], s.targets[k]);
  release(slot);
}

void Model::release(int slot) {
  if (slot < static_cast<int>(saved_.size())) saved_[slot] = Saved{};
  acts_.release(slot);
}

int64_t Model::active_params() const {
  const ModelConfig& m = cfg_.model;
  const auto& a = m.attention;
  const int64_t D = m.hidden_size, H = a.num_heads;
  int64_t attn = (a.q_lora_rank > 0 ? D * a.q_lora_rank + a.q_lora_rank * H * (a.qk_nope_head_dim + a.qk_rope_head_dim)
                                    : D * H * (a.qk_nope_head_dim + a.qk_rope_head_dim)) +
                 D * (a.kv_lora_rank + a.qk_rope_head_dim) +
                 a.kv_lora_rank * H * (a.qk_nope_head_dim + a.v_head_dim) + H * a.v_head_dim * D;
  int64_t dense = 3 * D * m.dense_intermediate_size;
  int64_t F = m.moe.expert_intermediate_size;
  int64_t moe = m.moe.num_experts * D + 3 * D * F * (m.moe.experts_per_token + m.moe.num_shared_experts);
  int64_t n_moe = m.num_layers - m.first_dense_layers;
  int64_t total = m.num_layers * attn + m.first_dense_layers * dense + n_moe * moe;
  int64_t heads = 1 + m.mtp.depth;
  total += heads * m.vocab_size * D;
  total += m.mtp.depth * (attn + 2 * D * D + (n_moe > 0 ? moe : dense));
  return total;
}

double Model::flops_per_token() const {
  const ModelConfig& m = cfg_.model;
  const auto& a = m.attention;
  // causal attention: each query sees (T + 1) / 2 keys on average; QK^T and PV per head
  double ctx = (cfg_.train.seq_len + 1) / 2.0;
  double attn_core = 2.0 * ctx * a.num_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim);
  double blocks = m.num_layers + m.mtp.depth;
  double forward = 2.0 * static_cast<double>(active_params()) + blocks * attn_core;
  return 3.0 * forward;
}

}  // namespace core
