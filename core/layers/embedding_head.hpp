// The ends of the model: token embedding, and the output head with its final RMSNorm and the
// fused cross-entropy loss. The main model and every MTP module share one embedding table and one
// head matrix (DualPipe keeps both on the same rank so that this sharing is physical); each head
// use has its own final norm.
#pragma once

#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/layers/layer.hpp"

namespace core {

class Embedding {
 public:
  Embedding(LayerEnv& env, const ModelConfig& m);
  // out [N, D] = table[tokens]
  void forward(const Tensor& tokens, const Tensor& out);
  // table gradient += scatter of dout by tokens
  void backward_weight(const Tensor& dout, const Tensor& tokens);
  int table_id() const { return w_; }

 private:
  LayerEnv& env_;
  int w_ = -1;
};

class HeadLoss {
 public:
  // norm_name: this use's final norm ("model.norm.weight" or an MTP module's shared_head.norm);
  // head_id: the shared [vocab, hidden] head, registered by the first HeadLoss (pass -1).
  HeadLoss(LayerEnv& env, const ModelConfig& m, const std::string& norm_name, int head_id);
  // Sum over tokens of the cross-entropy of predicting targets from h [N, D] (ignored targets < 0
  // count nothing); valid_count receives the number of counted tokens.
  double forward(int slot, const Tensor& h, const Tensor& targets, int64_t* valid_count);
  // dh [N, D] written for the loss scale * sum; the head and norm weight gradients are
  // accumulated here too (the fused op computes both from one pass over the logits).
  void backward(int slot, double scale, const Tensor& dh);
  int head_id() const { return w_head_; }

 private:
  struct Saved {
    Tensor h, rstd, hn, targets, lse;
  };
  LayerEnv& env_;
  double eps_;
  int w_norm_ = -1, w_head_ = -1;
  std::vector<Saved> saved_;
};

}  // namespace core
