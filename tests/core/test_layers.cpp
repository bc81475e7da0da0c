// Float64 finite-difference checks of every layer's input and weight gradients.
#include <catch2/catch.hpp>

#include "core/layers/attention.hpp"
#include "core/layers/mlp.hpp"
#include "core/layers/moe.hpp"
#include "layer_harness.hpp"

using namespace testing;

TEST_CASE("MLA attention layer gradients (q_lora > 0) match finite differences", "[layers]") {
  Harness h(5);
  auto m = tiny_model(6);
  auto layer = core::make_attention_layer(h.env, m, "model.layers.0.");
  h.ps.finalize();
  h.ps.init(7);
  check_layer_gradients("mla", h, *layer, 10, m.hidden_size);
}

TEST_CASE("MLA attention layer gradients (plain q projection) match finite differences", "[layers]") {
  Harness h(4);
  auto m = tiny_model(0);
  auto layer = core::make_attention_layer(h.env, m, "model.layers.0.");
  h.ps.finalize();
  h.ps.init(8);
  check_layer_gradients("mla-q", h, *layer, 8, m.hidden_size);
}

TEST_CASE("dense SwiGLU FFN layer gradients match finite differences", "[layers]") {
  Harness h(5);
  auto m = tiny_model();
  auto layer = core::make_ffn_layer(h.env, m, "model.layers.0.");
  h.ps.finalize();
  h.ps.init(9);
  check_layer_gradients("ffn", h, *layer, 10, m.hidden_size);
}

TEST_CASE("MoE layer gradients match finite differences for every balancer", "[layers][moe]") {
  for (std::string balancer : {"none", "aux_free", "aux_loss"}) {
    DYNAMIC_SECTION("balancer " << balancer) {
      Harness h(5);
      auto m = tiny_model();
      m.moe.balancer = balancer;
      m.moe.sequence_aux_loss_weight = 0.3;  // large, so its gradient is visible
      m.moe.aux_loss_weight = 0.2;
      h.env.slot(0).aux_grad_scale = 1.0;
      core::Moe* moe = nullptr;
      auto layer = core::make_moe_layer(h.env, m, "model.layers.1.", 0, &moe);
      h.ps.finalize();
      h.ps.init(10);
      // a non-zero bias changes selection but must not enter the gradient formula
      auto bias = h.ps.buffer(moe->bias_id());
      for (int e = 0; e < 4; ++e) bias.ptr<double>()[e] = 0.05 * (e - 1.5);
      check_layer_gradients("moe " + balancer, h, *layer, 10, m.hidden_size,
                            [&] { return moe->balance_loss(0); });
    }
  }
}

TEST_CASE("MoE layer counts every token k times and can route all tokens to one expert", "[layers][moe]") {
  Harness h(4);
  auto m = tiny_model();
  m.moe.num_groups = 1;
  core::Moe* moe = nullptr;
  auto layer = core::make_moe_layer(h.env, m, "model.layers.1.", 0, &moe);
  h.ps.finalize();
  h.ps.init(11);
  auto bias = h.ps.buffer(moe->bias_id());
  bias.ptr<double>()[2] = 100.0;  // every token picks expert 2 first
  std::vector<double> x = random_vector<double>(8 * 8, 3), y(8 * 8);
  layer->forward(0, core::Tensor::of(x.data(), {8, 8}), core::Tensor::of(y.data(), {8, 8}));
  h.acts.release(0);
  const auto& loads = moe->loads();
  int64_t total = 0;
  for (auto v : loads) total += v;
  CHECK(total == 8 * 2);
  CHECK(loads[2] == 8);
  for (double v : y) CHECK(std::isfinite(v));
}
