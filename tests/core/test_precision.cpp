// The precision policy in the layers: every layer's output and gradients under bf16 and fp8 agree
// with fp32 to the precision's error (DeepGEMM's metric), and the low-precision copies of the
// Linear inputs make the activation memory smaller. Shapes cross the 128-element tiles.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>

#include "common/gradcheck.hpp"
#include "core/layers/attention.hpp"
#include "core/layers/linear.hpp"
#include "core/layers/mlp.hpp"
#include "core/layers/moe.hpp"
#include "core/model.hpp"
#include "layer_harness.hpp"

namespace {

using core::Precision;
using core::Tensor;

// 1 - 2 sum(xy) / sum(x^2 + y^2): 0 for equal tensors, about the relative squared error.
double gemm_metric(const std::vector<float>& x, const std::vector<float>& y) {
  double xy = 0, xx = 0, yy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    xy += static_cast<double>(x[i]) * y[i];
    xx += static_cast<double>(x[i]) * x[i];
    yy += static_cast<double>(y[i]) * y[i];
  }
  return xx + yy > 0 ? 1.0 - 2.0 * xy / (xx + yy) : 0.0;
}

core::ModelConfig layer_model() {
  core::ModelConfig m = testing::tiny_model(96);
  m.hidden_size = 160;  // a full and a partial 128-column tile
  m.dense_intermediate_size = 200;
  m.init_std = 0.05;
  m.attention.num_heads = 2;
  m.attention.kv_lora_rank = 64;
  m.attention.qk_nope_head_dim = 32;
  m.attention.qk_rope_head_dim = 16;
  m.attention.v_head_dim = 32;
  m.moe.expert_intermediate_size = 72;
  return m;
}

// One layer in f32 under a precision: its output, input gradient and weight gradients for a
// fixed input and output gradient, and the bytes its activation slot held.
struct LayerRun {
  std::vector<float> y, dx;  // without the residual path: y - x and dx - dy
  std::vector<std::vector<float>> grads;
  std::vector<std::string> names;
  size_t slot_bytes = 0;
};

using MakeLayer = std::function<std::unique_ptr<core::Layer>(core::LayerEnv&)>;

LayerRun run_layer(Precision p, const MakeLayer& make, int64_t rows, int64_t seq, int64_t dim) {
  core::Context ctx;
  core::ParamStore ps(core::DType::f32);
  core::Activations acts(1);
  core::LayerEnv env{ctx, ps, acts, seq};
  env.precision = p;
  env.slot(0).aux_grad_scale = 1.0;
  auto layer = make(env);
  ps.finalize();
  ps.init(17);
  auto x = testing::random_vector<float>(rows * dim, 5, 1.0);
  auto dy = testing::random_vector<float>(rows * dim, 6, 1.0);
  LayerRun r;
  r.y.resize(rows * dim);
  r.dx.resize(rows * dim);
  ps.zero_grads();
  layer->forward(0, Tensor::of(x.data(), {rows, dim}), Tensor::of(r.y.data(), {rows, dim}));
  layer->backward_input(0, Tensor::of(dy.data(), {rows, dim}),
                        Tensor::of(r.dx.data(), {rows, dim}));
  layer->backward_weight(0);
  // The residual path is exact in every precision and would dominate the comparison.
  for (int64_t i = 0; i < rows * dim; ++i) {
    r.y[i] -= x[i];
    r.dx[i] -= dy[i];
  }
  r.slot_bytes = acts.slot(0).high_water();
  acts.release(0);
  for (int id = 0; id < ps.size(); ++id) {
    Tensor g = ps.grad(id);
    r.grads.emplace_back(g.ptr<float>(), g.ptr<float>() + g.numel());
    r.names.push_back(ps.spec(id).name);
  }
  return r;
}

// Output, input gradient and every weight gradient of `p` against fp32, within `bound`; returns
// the largest metric seen.
double compare_to_fp32(const std::string& what, Precision p, const MakeLayer& make, double bound) {
  const int64_t rows = 144, seq = 72, dim = layer_model().hidden_size;  // 2 sequences
  const LayerRun ref = run_layer(Precision::fp32, make, rows, seq, dim);
  const LayerRun low = run_layer(p, make, rows, seq, dim);
  double worst = 0;
  auto check = [&](const std::string& name, const std::vector<float>& a,
                   const std::vector<float>& b) {
    double norm = 0;
    for (float v : b) norm += static_cast<double>(v) * v;
    REQUIRE(norm > 0);  // a gradient that is all zero would compare equal trivially
    const double d = gemm_metric(a, b);
    worst = std::max(worst, d);
    INFO(what << " " << core::precision_name(p) << ": " << name << " metric " << d);
    CHECK(d < bound);
    CHECK(d >= 0);
  };
  check("output - input", low.y, ref.y);
  check("input gradient - output gradient", low.dx, ref.dx);
  for (size_t i = 0; i < ref.grads.size(); ++i) check(ref.names[i], low.grads[i], ref.grads[i]);
  std::printf("%s %s: largest metric against fp32 %.2e, activation slot %zu bytes (fp32 %zu)\n",
              what.c_str(), core::precision_name(p), worst, low.slot_bytes, ref.slot_bytes);
  CHECK(low.slot_bytes < ref.slot_bytes);
  return worst;
}

const std::vector<std::pair<std::string, MakeLayer>>& layers() {
  static const std::vector<std::pair<std::string, MakeLayer>> all = {
      {"mla (q_lora)",
       [](core::LayerEnv& env) {
         return core::make_attention_layer(env, layer_model(), "model.layers.0.");
       }},
      {"mla (q_proj)",
       [](core::LayerEnv& env) {
         auto m = layer_model();
         m.attention.q_lora_rank = 0;
         return core::make_attention_layer(env, m, "model.layers.0.");
       }},
      {"dense ffn",
       [](core::LayerEnv& env) {
         return core::make_ffn_layer(env, layer_model(), "model.layers.0.");
       }},
      {"moe",
       [](core::LayerEnv& env) {
         auto m = layer_model();
         m.moe.sequence_aux_loss_weight = 0.1;
         return core::make_moe_layer(env, m, "model.layers.1.", 0, nullptr);
       }},
  };
  return all;
}

}  // namespace

TEST_CASE("fp8 layers: outputs and gradients agree with fp32 to FP8 error", "[precision]") {
  // One FP8 GEMM is ~7e-4 in this metric (docs/precision.md); a gradient passes through a few.
  for (const auto& [name, make] : layers()) {
    DYNAMIC_SECTION(name) {
      CHECK(compare_to_fp32(name, Precision::fp8, make, 1e-2) > 1e-4);
    }
  }
}

TEST_CASE("bf16 layers: outputs and gradients agree with fp32 to BF16 error", "[precision]") {
  for (const auto& [name, make] : layers()) {
    DYNAMIC_SECTION(name) {
      CHECK(compare_to_fp32(name, Precision::bf16, make, 1e-4) > 1e-7);
    }
  }
}

TEST_CASE("a model keeps less activation memory in bf16 and less again in fp8", "[precision]") {
  std::map<std::string, size_t> bytes;
  for (std::string p : {"fp32", "bf16", "fp8"}) {
    core::Config c;  // the tiny model
    c.train.precision = p;
    c.train.micro_batch_size = 2;
    core::Context ctx;
    core::Model model(c, ctx, core::DType::f32, 1);
    model.init(3);
    core::data::MicroBatch mb;
    mb.batch = 2;
    mb.seq_len = c.train.seq_len;
    const int64_t n = mb.batch * mb.seq_len;
    auto tokens = [&](uint64_t seed) {
      std::vector<int32_t> v(n);
      for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>(testing::mix64(seed + i) % 256);
      return v;
    };
    mb.inputs = tokens(1);
    mb.targets = {tokens(2), tokens(3)};
    core::LossScales sc{1.0 / n, 0.3 / n, 1.0};
    model.forward(0, mb, sc, true);
    model.backward_input(0);
    model.backward_weight(0);
    bytes[p] = model.activation_bytes();
  }
  std::printf(
      "activation memory of the tiny model, one micro-batch of 2 x 128 tokens: fp32 %zu, "
      "bf16 %zu, fp8 %zu bytes\n",
      bytes["fp32"], bytes["bf16"], bytes["fp8"]);
  CHECK(bytes["bf16"] < bytes["fp32"]);
  CHECK(bytes["fp8"] < bytes["bf16"]);
}

TEST_CASE("low precision needs f32 parameters; float64 gradient checks stay on fp32",
          "[precision]") {
  core::Config c;
  core::Context ctx;
  for (std::string p : {"bf16", "fp8"}) {
    c.train.precision = p;
    CHECK_THROWS_AS(core::Model(c, ctx, core::DType::f64, 1), core::InternalError);
  }
  c.train.precision = "fp32";
  CHECK_NOTHROW(core::Model(c, ctx, core::DType::f64, 1));
  CHECK(core::precision_from_name("fp8") == Precision::fp8);
  CHECK(std::string(core::precision_name(Precision::bf16)) == "bf16");
  CHECK_THROWS_AS(core::precision_from_name("fp16"), core::ConfigError);
}
