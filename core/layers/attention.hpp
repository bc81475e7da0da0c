// Multi-head latent attention (MLA) of DeepSeek-V3, training form, as a pre-norm residual layer:
//   y = x + W_o Attn(q, k, v),  a = RMSNorm(x)
//   q = W_qb RMSNorm(W_qa a)  (or W_q a when q_lora_rank = 0); per head [q_nope ; q_pe], RoPE on q_pe
//   [c_kv ; k_pe] = W_kva a;  k_pe gets RoPE and is shared by all heads
//   [k_nope ; v] per head = W_kvb RMSNorm(c_kv);  k = [k_nope ; k_pe]
// Scores are scaled by 1/sqrt(qk_nope + qk_rope). Parameter names follow the public checkpoint.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/layers/layer.hpp"
#include "core/layers/linear.hpp"
#include "core/layers/residual.hpp"

namespace core {

// The attention itself, without input norm and residual: out = W_o Attn(a).
class Mla : public Sublayer {
 public:
  // prefix: e.g. "model.layers.3.self_attn." (names are prefix + "q_a_proj.weight" ...).
  Mla(LayerEnv& env, const ModelConfig& m, const std::string& prefix);
  // a, out [N, D]; out written.
  void forward(int slot, const Tensor& a, const Tensor& out) override;
  // da [N, D] written.
  void backward_input(int slot, const Tensor& dout, const Tensor& da) override;
  void backward_weight(int slot) override;
  bool keeps_input() const override { return env_.precision == Precision::fp32; }

 private:
  struct Saved {
    LinearOperand a, cqn, ckvn;  // inputs only the Linears read (o is the attention core's too)
    Tensor cq, rstd_q, ckv, rstd_kv, q, k, v, o, lse;
    // gradients kept for the deferred weight pass
    Tensor dout, dq, dcq, dcqn, dckv, dckvn, dkvb, dkpe;
  };
  LayerEnv& env_;
  int64_t H_, dn_, dr_, dv_, qr_, kvr_, D_;
  double eps_, theta_, scale_;
  int w_qa_ = -1, w_qa_norm_ = -1, w_qb_ = -1, w_q_ = -1, w_kva_ = -1, w_kva_norm_ = -1,
      w_kvb_ = -1, w_o_ = -1;
  std::vector<Saved> saved_;
};

// The block's attention layer: y = x + Mla(RMSNorm(x)); prefix e.g. "model.layers.3.".
std::unique_ptr<Layer> make_attention_layer(LayerEnv& env, const ModelConfig& m,
                                            const std::string& prefix);

}  // namespace core
