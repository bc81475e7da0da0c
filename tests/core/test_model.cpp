// Whole-model checks in float64: gradients of the full objective (main head, MTP head, balance
// loss) w.r.t. every parameter by finite differences, and name-keyed deterministic init.
#include <catch2/catch.hpp>

#include "core/model.hpp"
#include "layer_harness.hpp"

using namespace testing;

namespace {

core::data::MicroBatch random_batch(int64_t B, int64_t T, int V, int depth, uint64_t seed) {
  core::data::MicroBatch mb;
  mb.batch = B;
  mb.seq_len = T;
  // a window per sequence, then shifted views of it, as the loader makes them
  std::vector<int32_t> win(B * (T + 1 + depth));
  for (size_t i = 0; i < win.size(); ++i) win[i] = static_cast<int32_t>(mix64(seed + i) % V);
  auto view = [&](int shift) {
    std::vector<int32_t> v(B * T);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) v[b * T + t] = win[b * (T + 1 + depth) + t + shift];
    return v;
  };
  mb.inputs = view(0);
  for (int k = 0; k <= depth; ++k) mb.targets.push_back(view(1 + k));
  return mb;
}

core::Config model_config(int depth, const std::string& balancer) {
  core::Config c;
  c.model = tiny_model();
  c.model.mtp.depth = depth;
  c.model.moe.balancer = balancer;
  c.model.moe.sequence_aux_loss_weight = 0.2;
  c.model.moe.aux_loss_weight = 0.2;
  c.train.seq_len = 4;
  return c;
}

}  // namespace

TEST_CASE("full model gradients (embedding, blocks, head, MTP, balance loss) match finite differences",
          "[model]") {
  for (int depth : {0, 1, 2}) {
    DYNAMIC_SECTION("mtp depth " << depth) {
      core::Config c = model_config(depth, "aux_free");
      core::Context ctx;
      core::Model model(c, ctx, core::DType::f64, 1);
      model.init(5);
      auto mb = random_batch(2, 4, c.model.vocab_size, depth, 77);
      core::LossScales sc{0.3, 0.2, 0.7};
      auto objective = [&](const core::MicroLosses& L) {
        double j = sc.lm * L.lm_sum + sc.aux * L.aux;
        for (double v : L.mtp_sum) j += sc.mtp * v;
        return j;
      };
      auto& ps = model.params();
      ps.zero_grads();
      model.forward(0, mb, sc, true);
      model.backward_input(0);
      model.backward_weight(0);
      for (int id = 0; id < ps.size(); ++id) {
        auto p = ps.param(id), g = ps.grad(id);
        std::vector<double> pv(p.ptr<double>(), p.ptr<double>() + p.numel());
        std::vector<double> gv(g.ptr<double>(), g.ptr<double>() + g.numel());
        auto loss = [&] {
          std::copy(pv.begin(), pv.end(), p.ptr<double>());
          double j = objective(model.forward(0, mb, sc, false));
          model.release(0);
          return j;
        };
        check_gradient(ps.spec(id).name, pv, gv, loss, 1e-6, 1e-6, 24);
        std::copy(pv.begin(), pv.end(), p.ptr<double>());
      }
    }
  }
}

TEST_CASE("MTP modules share the embedding and head and are named as checkpoint layers", "[model]") {
  core::Config c = model_config(2, "aux_free");
  core::Context ctx;
  core::Model model(c, ctx, core::DType::f64, 1);
  int heads = 0, embeds = 0, eh = 0;
  for (int id = 0; id < model.params().size(); ++id) {
    const auto& n = model.params().spec(id).name;
    heads += n == "lm_head.weight";
    embeds += n == "model.embed_tokens.weight";
    eh += n == "model.layers.2.eh_proj.weight" || n == "model.layers.3.eh_proj.weight";
  }
  CHECK(heads == 1);
  CHECK(embeds == 1);
  CHECK(eh == 2);
  // main MoE layer + one MoE block per MTP module
  CHECK(model.moe_layers().size() == 3);
}

TEST_CASE("initial weights depend only on (seed, global name, index)", "[model]") {
  core::Config a = model_config(1, "aux_free");
  core::Config b = a;
  b.model.mtp.depth = 0;  // a different model: fewer tensors, different offsets
  core::Context ctx;
  core::Model ma(a, ctx, core::DType::f32, 1), mb(b, ctx, core::DType::f32, 1);
  ma.init(9);
  mb.init(9);
  int compared = 0;
  for (int i = 0; i < mb.params().size(); ++i)
    for (int j = 0; j < ma.params().size(); ++j)
      if (ma.params().spec(j).name == mb.params().spec(i).name) {
        auto x = ma.params().param(j), y = mb.params().param(i);
        REQUIRE(x.numel() == y.numel());
        for (int64_t e = 0; e < x.numel(); ++e) REQUIRE(x.ptr<float>()[e] == y.ptr<float>()[e]);
        ++compared;
      }
  CHECK(compared == mb.params().size());
  core::Model mc(a, ctx, core::DType::f32, 1);
  mc.init(10);  // another seed gives other weights
  auto p = mc.params().param(0), q = ma.params().param(0);
  CHECK(p.ptr<float>()[0] != q.ptr<float>()[0]);
}

TEST_CASE("expert slices are initialized by their global expert id", "[model]") {
  core::ParamStore ps(core::DType::f64);
  core::ParamSpec s;
  s.name = "model.layers.1.mlp.experts.{}.down_proj.weight";
  s.shape = {2, 3, 4};
  s.stack_first = 5;  // this rank holds experts 5 and 6
  s.std = 0.5;
  int id = ps.add(s);
  ps.finalize();
  ps.init(3);
  auto t = ps.param(id);
  CHECK(t.ptr<double>()[12 + 7] == core::init_normal(3, "model.layers.1.mlp.experts.6.down_proj.weight", 7, 0.5));
  CHECK(t.ptr<double>()[0] == core::init_normal(3, "model.layers.1.mlp.experts.5.down_proj.weight", 0, 0.5));
}

TEST_CASE("deferred weight passes over two in-flight micro-batches give the sequential gradients",
          "[model]") {
  core::Config c = model_config(1, "aux_free");
  core::Context ctx;
  core::Model seq(c, ctx, core::DType::f64, 1), deferred(c, ctx, core::DType::f64, 2);
  seq.init(4);
  deferred.init(4);
  auto mb0 = random_batch(2, 4, c.model.vocab_size, 1, 11);
  auto mb1 = random_batch(2, 4, c.model.vocab_size, 1, 12);
  core::LossScales sc{0.25, 0.1, 0.5};
  seq.params().zero_grads();
  for (auto* mb : {&mb0, &mb1}) {
    seq.forward(0, *mb, sc, true);
    seq.backward_input(0);
    seq.backward_weight(0);
  }
  // a pipeline-like order: both forwards in flight, input passes, then the deferred weight passes
  deferred.params().zero_grads();
  deferred.forward(0, mb0, sc, true);
  deferred.forward(1, mb1, sc, true);
  deferred.backward_input(0);
  deferred.backward_input(1);
  deferred.backward_weight(0);
  deferred.backward_weight(1);
  auto a = seq.params().flat_grads(), b = deferred.params().flat_grads();
  int64_t differing = 0;
  for (int64_t i = 0; i < a.numel(); ++i) differing += a.ptr<double>()[i] != b.ptr<double>()[i];
  CHECK(differing == 0);
  double norm = 0;
  for (int64_t i = 0; i < a.numel(); ++i) norm += a.ptr<double>()[i] * a.ptr<double>()[i];
  CHECK(norm > 0);
}
