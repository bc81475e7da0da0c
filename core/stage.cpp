// Stage assembly, the forward / backward walks cut into pieces, and the weight pass.
#include "core/stage.hpp"

#include <cstring>

#include "core/layers/attention.hpp"
#include "core/layers/mlp.hpp"
#include "kernels/ops.hpp"
#include "parallel/communicator.hpp"

namespace core {
namespace {

// The parameter ids registered while `build` runs.
template <class F>
std::vector<int> registered(ParamStore& ps, F&& build) {
  const int before = ps.size();
  build();
  std::vector<int> ids;
  for (int id = before; id < ps.size(); ++id) ids.push_back(id);
  return ids;
}

}  // namespace

Stage::Stage(const Config& cfg, Context& ctx, ParamStore& params, const StagePlan& plan, int slots,
             parallel::Communicator* ep)
    : cfg_(cfg),
      plan_(plan),
      params_(params),
      acts_(slots),
      env_{ctx, params, acts_, cfg.train.seq_len, ep} {
  const ModelConfig& m = cfg.model;
  env_.precision = precision_from_name(cfg.train.precision);
  FLOT_CHECK(env_.precision == Precision::fp32 || params.dtype() == DType::f32,
             "train.precision {} needs f32 parameters, not {}", cfg.train.precision,
             dtype_name(params.dtype()));
  rows_ = static_cast<int64_t>(cfg.train.micro_batch_size) * cfg.train.seq_len;
  D_ = m.hidden_size;
  depth_ = plan.has_head() ? m.mtp.depth : 0;
  if (plan.has_embedding() || depth_ > 0) embed_ = std::make_unique<Embedding>(env_, m);
  const int first = plan.first_block, last = plan.first_block + plan.num_blocks;
  for (int l = first; l < last; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    std::unique_ptr<Layer> layer;
    auto ids = registered(params, [&] { layer = make_attention_layer(env_, m, prefix); });
    layer->param_ids = ids;
    layers_.push_back(std::move(layer));
    ids = registered(params, [&] {
      if (l < m.first_dense_layers) {
        layer = make_ffn_layer(env_, m, prefix);
      } else {
        Moe* moe = nullptr;
        layer = make_moe_layer(env_, m, prefix, l - m.first_dense_layers, &moe);
        moe_.push_back(moe);
      }
    });
    layer->param_ids = ids;
    layers_.push_back(std::move(layer));
  }
  if (plan.has_head()) {
    auto ids = registered(params, [&] { head_ = std::make_unique<HeadLoss>(env_, m, "model.norm.weight", -1); });
    head_ids_ = {head_->head_id()};
    for (int id : ids)
      if (id != head_->head_id()) head_ids_.push_back(id);
    const int main_moe = m.num_layers - m.first_dense_layers;
    for (int k = 1; k <= depth_; ++k) {
      const int index = m.num_layers + k - 1;
      mtp_ids_.push_back(registered(params, [&] {
        mtp_.push_back(std::make_unique<MtpModule>(env_, m, index, main_moe + k - 1));
      }));
      if (Moe* moe = mtp_.back()->moe()) moe_.push_back(moe);
      auto norm = registered(params, [&] {
        mtp_heads_.push_back(std::make_unique<HeadLoss>(
            env_, m, "model.layers." + std::to_string(index) + ".shared_head.norm.weight",
            head_->head_id()));
      });
      norm.insert(norm.begin(), head_->head_id());
      mtp_head_ids_.push_back(norm);
    }
  }

  // The walks. A piece ends where an exchange is in flight (a non-final phase of a layer that
  // exchanges tokens); without expert parallelism nothing is in flight and there is one piece.
  const bool exchanges = ep && ep->size() > 1;
  if (plan.has_embedding()) fwd_steps_.push_back({Step::embed, 0, 0});
  for (int i = 0; i < static_cast<int>(layers_.size()); ++i)
    for (int p = 0; p < layers_[i]->phases(); ++p) {
      if (p > 0 && exchanges) fwd_cuts_.push_back(static_cast<int>(fwd_steps_.size()));
      fwd_steps_.push_back({Step::layer, i, p});
    }
  if (plan.has_head()) fwd_steps_.push_back({Step::head, 0, 0});
  for (int k = 0; k < depth_; ++k)
    for (int p = 0; p < mtp_[k]->phases(); ++p) {
      if (p > 0 && exchanges) fwd_cuts_.push_back(static_cast<int>(fwd_steps_.size()));
      fwd_steps_.push_back({Step::mtp, k, p});
    }
  for (int k = depth_ - 1; k >= 0; --k)
    for (int p = 0; p < mtp_[k]->phases(); ++p) {
      if (p > 0 && exchanges) bwd_cuts_.push_back(static_cast<int>(bwd_steps_.size()));
      bwd_steps_.push_back({Step::mtp, k, p});
    }
  if (plan.has_head()) bwd_steps_.push_back({Step::head, 0, 0});
  for (int i = static_cast<int>(layers_.size()) - 1; i >= 0; --i)
    for (int p = 0; p < layers_[i]->phases(); ++p) {
      if (p > 0 && exchanges) bwd_cuts_.push_back(static_cast<int>(bwd_steps_.size()));
      bwd_steps_.push_back({Step::layer, i, p});
    }
  // A weight piece may run once the last backward step of its module or layer has.
  auto after_last = [&](Step::Kind kind, int index) {
    int n = 0;
    for (int j = 0; j < static_cast<int>(bwd_steps_.size()); ++j)
      if (bwd_steps_[j].kind == kind && bwd_steps_[j].index == index) n = j + 1;
    return n;
  };
  for (int k = depth_ - 1; k >= 0; --k) weight_after_.push_back(after_last(Step::mtp, k));
  for (int i = static_cast<int>(layers_.size()) - 1; i >= 0; --i)
    weight_after_.push_back(after_last(Step::layer, i));
  if (embed_) weight_after_.push_back(static_cast<int>(bwd_steps_.size()));
  saved_.resize(slots);
}

Tensor Stage::alloc_hidden(int slot) { return acts_.slot(slot).alloc(params_.dtype(), {rows_, D_}); }

void Stage::forward_begin(int slot, const data::MicroBatch& mb, const Tensor& input,
                          const LossScales& scales, bool training) {
  Saved& s = saved_.at(slot);
  s = Saved{};
  BumpArena& ar = acts_.slot(slot);
  FLOT_CHECK(mb.seq_len == env_.seq_len, "micro-batch of sequences of {}, the model's are {}",
             mb.seq_len, env_.seq_len);
  const int64_t rows = mb.batch * mb.seq_len;
  s.rows = rows;
  FLOT_CHECK(static_cast<int>(mb.targets.size()) >= depth_ + 1,
             "micro-batch has {} target rows, need {}", mb.targets.size(), depth_ + 1);
  env_.slot(slot) = SlotInfo{training, scales.aux};
  s.scales = scales;
  auto tokens = [&](const std::vector<int32_t>& v) {
    FLOT_CHECK(static_cast<int64_t>(v.size()) == rows, "{} tokens for {} rows", v.size(), rows);
    Tensor t = ar.alloc(DType::i32, {rows});
    std::memcpy(t.data, v.data(), rows * sizeof(int32_t));
    return t;
  };
  if (plan_.has_embedding()) {
    s.inputs = tokens(mb.inputs);
    s.x0 = ar.alloc(params_.dtype(), {rows, D_});
  } else {
    FLOT_CHECK(input.rows() == rows && input.cols() == D_, "stage {} input {} for {} rows of {}",
               plan_.stage, input.shape_str(), rows, D_);
    s.x0 = input;
  }
  if (plan_.has_head())
    for (int k = 0; k <= depth_; ++k) s.targets.push_back(tokens(mb.targets[k]));
  for (size_t i = 0; i < layers_.size(); ++i) s.outs.push_back(ar.alloc(params_.dtype(), {rows, D_}));
}

void Stage::forward_piece(int slot, int piece) {
  FLOT_CHECK(piece >= 0 && piece < forward_pieces(), "forward piece {} of {}", piece, forward_pieces());
  const int b = piece == 0 ? 0 : fwd_cuts_[piece - 1];
  const int e = piece == forward_pieces() - 1 ? static_cast<int>(fwd_steps_.size()) : fwd_cuts_[piece];
  for (int i = b; i < e; ++i) run_forward(fwd_steps_[i], slot);
  if (piece == forward_pieces() - 1) {
    Saved& s = saved_.at(slot);
    s.losses.aux = 0;
    for (Moe* moe : moe_) s.losses.aux += moe->balance_loss(slot);
  }
}

void Stage::run_forward(const Step& st, int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = acts_.slot(slot);
  const DType dt = params_.dtype();
  switch (st.kind) {
    case Step::embed:
      embed_->forward(s.inputs, s.x0);
      return;
    case Step::layer:
      layers_[st.index]->forward_phase(st.phase, slot, layer_input(s, st.index), s.outs[st.index]);
      return;
    case Step::head:
      s.losses.lm_sum = head_->forward(slot, last_hidden(s), s.targets[0], &s.losses.lm_tokens);
      return;
    case Step::mtp: {
      const int k = st.index;
      if (st.phase == 0) {
        // module k + 1 sees token i + k + 1: the window shifted by k + 1, the k-th target row
        Tensor e = ar.alloc(dt, {s.rows, D_});
        embed_->forward(s.targets[k], e);
        s.mtp_emb.push_back(e);
        s.mtp_out.push_back(ar.alloc(dt, {s.rows, D_}));
      }
      const Tensor h = k == 0 ? last_hidden(s) : s.mtp_out[k - 1];
      mtp_[k]->forward_phase(st.phase, slot, s.mtp_emb[k], h, s.mtp_out[k]);
      if (st.phase == mtp_[k]->phases() - 1) {
        int64_t count = 0;
        s.losses.mtp_sum.push_back(mtp_heads_[k]->forward(slot, s.mtp_out[k], s.targets[k + 1], &count));
        s.losses.mtp_tokens.push_back(count);
      }
      return;
    }
  }
}

Tensor Stage::output(int slot) const {
  FLOT_CHECK(!plan_.has_head(), "the last stage has no output to send");
  return last_hidden(saved_.at(slot));
}

const MicroLosses& Stage::losses(int slot) const { return saved_.at(slot).losses; }

MicroLosses Stage::forward(int slot, const data::MicroBatch& mb, const Tensor& input,
                           const LossScales& scales, bool training) {
  forward_begin(slot, mb, input, scales, training);
  for (int p = 0; p < forward_pieces(); ++p) forward_piece(slot, p);
  return losses(slot);
}

void Stage::backward_begin(int slot, const Tensor& dy) {
  Saved& s = saved_.at(slot);
  s.grads.assign(layers_.size(), Tensor());
  if (!plan_.has_head()) {
    FLOT_CHECK(dy.rows() == s.rows && dy.cols() == D_, "stage {} output gradient {}", plan_.stage,
               dy.shape_str());
    s.grads.back() = dy;
  }
  s.mtp_dout.assign(depth_, Tensor());
  s.mtp_de.assign(depth_, Tensor());
  s.dh_carry = Tensor();
  s.bwd_done = 0;
}

void Stage::backward_piece(int slot, int piece) {
  FLOT_CHECK(piece >= 0 && piece < backward_pieces(), "backward piece {} of {}", piece, backward_pieces());
  const int b = piece == 0 ? 0 : bwd_cuts_[piece - 1];
  const int e = piece == backward_pieces() - 1 ? static_cast<int>(bwd_steps_.size()) : bwd_cuts_[piece];
  for (int i = b; i < e; ++i) run_backward(bwd_steps_[i], slot);
  saved_.at(slot).bwd_done = e;
}

void Stage::run_backward(const Step& st, int slot) {
  Saved& s = saved_.at(slot);
  BumpArena& ar = acts_.slot(slot);
  const DType dt = params_.dtype();
  switch (st.kind) {
    case Step::embed:
      return;
    case Step::mtp: {
      // The MTP chain, last depth first: the gradient of each module's input hidden flows into
      // the previous depth (finally the main model's last hidden state).
      const int k = st.index;
      if (st.phase == 0) {
        Tensor dout = ar.alloc(dt, {s.rows, D_});
        mtp_heads_[k]->backward(slot, s.scales.mtp, dout);
        report(mtp_head_ids_[k]);
        if (!s.dh_carry.empty()) kernels::axpy(1.0, s.dh_carry, dout);
        s.mtp_dout[k] = dout;
        s.mtp_de[k] = ar.alloc(dt, {s.rows, D_});
        s.dh_carry = ar.alloc(dt, {s.rows, D_});
      }
      mtp_[k]->backward_phase(st.phase, slot, s.mtp_dout[k], s.mtp_de[k], s.dh_carry);
      return;
    }
    case Step::head: {
      Tensor dh = ar.alloc(dt, {s.rows, D_});
      head_->backward(slot, s.scales.lm, dh);
      report(head_ids_);
      if (!s.dh_carry.empty()) kernels::axpy(1.0, s.dh_carry, dh);
      s.grads.back() = dh;
      return;
    }
    case Step::layer: {
      const int i = st.index;
      if (st.phase == 0) {
        Tensor dx = ar.alloc(dt, {s.rows, D_});
        if (i > 0)
          s.grads[i - 1] = dx;
        else
          s.dx0 = dx;
      }
      layers_[i]->backward_phase(st.phase, slot, s.grads[i], i > 0 ? s.grads[i - 1] : s.dx0);
      return;
    }
  }
}

Tensor Stage::input_grad(int slot) const {
  FLOT_CHECK(!plan_.has_embedding(), "the first stage has no input gradient to send");
  return saved_.at(slot).dx0;
}

void Stage::backward_input(int slot, const Tensor& dy) {
  backward_begin(slot, dy);
  for (int p = 0; p < backward_pieces(); ++p) backward_piece(slot, p);
}

int Stage::weight_pieces() const {
  return depth_ + static_cast<int>(layers_.size()) + (embed_ ? 1 : 0);
}

void Stage::backward_weight_piece(int slot, int piece) {
  FLOT_CHECK(piece >= 0 && piece < weight_pieces(), "weight piece {} of {}", piece, weight_pieces());
  Saved& s = saved_.at(slot);
  // Last layers first, so that gradient buckets fill in the order the reductions can start.
  if (piece < depth_) {
    const int k = depth_ - 1 - piece;
    mtp_[k]->backward_weight(slot);
    report(mtp_ids_[k]);
    return;
  }
  piece -= depth_;
  if (piece < static_cast<int>(layers_.size())) {
    const int i = static_cast<int>(layers_.size()) - 1 - piece;
    layers_[i]->backward_weight(slot);
    report(layers_[i]->param_ids);
    return;
  }
  if (plan_.has_embedding()) embed_->backward_weight(s.dx0, s.inputs);
  for (int k = 0; k < depth_; ++k) embed_->backward_weight(s.mtp_de[k], s.targets[k]);
  report({embed_->table_id()});
}

void Stage::backward_weight(int slot) {
  for (int p = 0; p < weight_pieces(); ++p) backward_weight_piece(slot, p);
}

int Stage::weight_pieces_ready(int slot) const {
  const int done = saved_.at(slot).bwd_done;
  int n = 0;
  while (n < weight_pieces() && weight_after_[n] <= done) ++n;
  return n;
}

bool Stage::exchanges_ready(int slot) const {
  for (const Moe* moe : moe_)
    if (!moe->exchange_ready(slot)) return false;
  return true;
}

void Stage::release(int slot) {
  saved_.at(slot) = Saved{};
  acts_.release(slot);
}

std::vector<std::vector<int>> Stage::grad_reports() const {
  std::vector<std::vector<int>> r;
  if (head_) r.push_back(head_ids_);
  for (const auto& ids : mtp_head_ids_) r.push_back(ids);
  for (const auto& ids : mtp_ids_) r.push_back(ids);
  for (const auto& l : layers_) r.push_back(l->param_ids);
  if (embed_) r.push_back({embed_->table_id()});
  return r;
}

}  // namespace core
