// Float64 harness for layer tests: a tiny model config, an f64 parameter store, and finite
// differences of L = sum(r * layer(x)) (+ the balance loss) w.r.t. the input and every parameter.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/config.hpp"
#include "core/layers/layer.hpp"

namespace testing {

inline core::ModelConfig tiny_model(int q_lora = 6) {
  core::ModelConfig m;
  m.vocab_size = 11;
  m.hidden_size = 8;
  m.num_layers = 2;
  m.first_dense_layers = 1;
  m.dense_intermediate_size = 6;
  m.init_std = 0.3;
  m.attention.num_heads = 2;
  m.attention.q_lora_rank = q_lora;
  m.attention.kv_lora_rank = 5;
  m.attention.qk_nope_head_dim = 4;
  m.attention.qk_rope_head_dim = 2;
  m.attention.v_head_dim = 3;
  m.moe.num_experts = 4;
  m.moe.experts_per_token = 2;
  m.moe.num_groups = 2;
  m.moe.groups_per_token = 1;
  m.moe.num_shared_experts = 1;
  m.moe.expert_intermediate_size = 3;
  m.moe.route_scale = 1.5;
  m.mtp.depth = 1;
  return m;
}

struct Harness {
  explicit Harness(int64_t seq_len) : env{ctx, ps, acts, seq_len} {}
  core::Context ctx;
  core::ParamStore ps{core::DType::f64};
  core::Activations acts{2};
  core::LayerEnv env;
};

// Checks d/dx and d/dparams of L = sum(r * y) + aux(layer) for a single-input layer.
// aux: returns the layer's extra scalar loss of slot 0 after a forward (0 if none).
template <class LayerT>
void check_layer_gradients(const std::string& what, Harness& h, LayerT& layer, int64_t rows,
                           int64_t dim, const std::function<double()>& aux = [] { return 0.0; },
                           double tol = 1e-6) {
  using core::Tensor;
  std::vector<double> x = random_vector<double>(rows * dim, 101, 1.0);
  std::vector<double> r = random_vector<double>(rows * dim, 202, 1.0);
  std::vector<double> y(rows * dim), dx(rows * dim);
  auto X = Tensor::of(x.data(), {rows, dim}), Y = Tensor::of(y.data(), {rows, dim});
  auto loss = [&] {
    layer.forward(0, X, Y);
    double l = dot(r, y) + aux();
    h.acts.release(0);
    return l;
  };
  h.ps.zero_grads();
  layer.forward(0, X, Y);
  layer.backward_input(0, Tensor::of(r.data(), {rows, dim}), Tensor::of(dx.data(), {rows, dim}));
  layer.backward_weight(0);
  h.acts.release(0);
  check_gradient(what + " d/dx", x, dx, loss, 1e-6, tol);
  for (int id = 0; id < h.ps.size(); ++id) {
    Tensor p = h.ps.param(id), g = h.ps.grad(id);
    std::vector<double> pv(p.ptr<double>(), p.ptr<double>() + p.numel());
    std::vector<double> gv(g.ptr<double>(), g.ptr<double>() + g.numel());
    auto ploss = [&] {
      std::copy(pv.begin(), pv.end(), p.ptr<double>());
      return loss();
    };
    check_gradient(what + " d/d " + h.ps.spec(id).name, pv, gv, ploss, 1e-6, tol, 48);
    std::copy(pv.begin(), pv.end(), p.ptr<double>());
  }
}

}  // namespace testing
