// MLA against the conformance vectors (tests/data/oracle/mla_vectors.json, a copy of
// shared/oracle): weights under their public checkpoint names, output to ~1e-5.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/layers/attention.hpp"
#include "layer_harness.hpp"

namespace {

template <class Scalar>
void run_oracle(core::DType dtype, double tol) {
  std::ifstream in(FLOTILLA_TEST_DATA "/oracle/mla_vectors.json");
  REQUIRE(in.good());
  nlohmann::json j = nlohmann::json::parse(in);
  const auto& c = j["config"];
  core::ModelConfig m;
  m.hidden_size = c["hidden_size"];
  m.rms_norm_eps = 1e-6;
  m.attention.num_heads = c["num_heads"];
  m.attention.q_lora_rank = c["q_lora_rank"];
  m.attention.kv_lora_rank = c["kv_lora_rank"];
  m.attention.qk_nope_head_dim = c["qk_nope_head_dim"];
  m.attention.qk_rope_head_dim = c["qk_rope_head_dim"];
  m.attention.v_head_dim = c["v_head_dim"];
  m.attention.rope_theta = 10000;
  const int64_t T = c["seq_len"], D = m.hidden_size;

  core::Context ctx;
  core::ParamStore ps(dtype);
  core::Activations acts(1);
  core::LayerEnv env{ctx, ps, acts, T};
  core::Mla mla(env, m, "self_attn.");
  ps.finalize();
  int loaded = 0;
  for (auto& [name, w] : j["weights"].items()) {
    int id = ps.find("self_attn." + name);
    INFO(name);
    REQUIRE(id >= 0);
    auto p = ps.param(id);
    const auto& data = w["data"];
    REQUIRE(static_cast<int64_t>(data.size()) == p.numel());
    for (int64_t i = 0; i < p.numel(); ++i) p.template ptr<Scalar>()[i] = data[i].template get<Scalar>();
    ++loaded;
  }
  CHECK(loaded == ps.size());  // every parameter of the layer came from the oracle

  std::vector<Scalar> x = j["input"].get<std::vector<Scalar>>(), y(T * D);
  const std::vector<double> expected = j["output"].get<std::vector<double>>();
  mla.forward(0, core::Tensor::of(x.data(), {T, D}), core::Tensor::of(y.data(), {T, D}));
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::fabs(y[i] - expected[i]));
  INFO("max abs error " << worst);
  CHECK(worst < tol);
}

}  // namespace

TEST_CASE("MLA forward reproduces the conformance vectors", "[layers][oracle]") {
  run_oracle<double>(core::DType::f64, 2e-6);
  run_oracle<float>(core::DType::f32, 1e-5);
}
