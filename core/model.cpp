// Model assembly over stages, the one-stage conveniences and the FLOP count.
#include "core/model.hpp"

#include <algorithm>

namespace core {

Model::Model(const Config& cfg, Context& ctx, DType dtype, int slots)
    : Model(cfg, ctx, dtype, {StagePlan{0, 1, 0, cfg.model.num_layers}}, {slots}, nullptr, {1, 1}) {}

Model::Model(const Config& cfg, Context& ctx, DType dtype, const std::vector<StagePlan>& plans,
             const std::vector<int>& slots, parallel::Communicator* ep,
             std::array<int64_t, kParamGroups> pad)
    : cfg_(cfg), params_(dtype) {
  FLOT_CHECK(!plans.empty() && plans.size() == slots.size(), "{} stages with {} slot counts",
             plans.size(), slots.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    FLOT_CHECK(i == 0 || plans[i].stage > plans[i - 1].stage, "stages must come in ascending order");
    stages_.push_back(std::make_unique<Stage>(cfg, ctx, params_, plans[i], slots[i], ep));
    for (Moe* m : stages_.back()->moe_layers()) moe_.push_back(m);
  }
  std::sort(moe_.begin(), moe_.end(), [](Moe* a, Moe* b) { return a->index() < b->index(); });
  params_.finalize(pad);
}

Stage* Model::find_stage(int s) {
  for (auto& st : stages_)
    if (st->plan().stage == s) return st.get();
  return nullptr;
}

Stage& Model::only() {
  FLOT_CHECK(stages_.size() == 1 && stages_[0]->plan().has_embedding() && stages_[0]->plan().has_head(),
             "this call needs the whole model in one stage");
  return *stages_[0];
}

MicroLosses Model::forward(int slot, const data::MicroBatch& mb, const LossScales& scales,
                           bool training) {
  return only().forward(slot, mb, Tensor(), scales, training);
}

void Model::backward_input(int slot) { only().backward_input(slot, Tensor()); }
void Model::backward_weight(int slot) {
  only().backward_weight(slot);
  only().release(slot);
}
void Model::release(int slot) { only().release(slot); }

int Model::total_moe_layers() const {
  const ModelConfig& m = cfg_.model;
  const int main = m.num_layers - m.first_dense_layers;
  return main + (main > 0 ? m.mtp.depth : 0);
}

size_t Model::activation_bytes() const {
  size_t b = 0;
  for (const auto& s : stages_) b += s->activations().bytes();
  return b;
}

size_t Model::exchange_bytes() const {
  size_t b = 0;
  for (const auto& s : stages_)
    for (const Moe* m : s->moe_layers()) b += m->exchange_bytes();
  return b;
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
