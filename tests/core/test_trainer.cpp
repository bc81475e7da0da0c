// The optimizer step as a whole: determinism, gradient accumulation equivalence, and the
// aux-loss-free bias rule applied with the loads of the whole global batch.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>

#include "core/trainer.hpp"
#include "layer_harness.hpp"
#include "trainer_config.hpp"

namespace {

core::Config small_config() { return testing::small_trainer_config(); }

}  // namespace

TEST_CASE("training is deterministic: the same config gives bitwise identical losses", "[trainer]") {
  for (std::string precision : {"fp32", "bf16", "fp8"}) {
    DYNAMIC_SECTION("precision " << precision) {
      core::Config c = small_config();
      c.train.precision = precision;
      core::Context ctx;
      core::Trainer a(c, ctx, "", false), b(c, ctx, "", false);
      for (int s = 0; s < 3; ++s) {
        auto ma = a.step(), mb = b.step();
        CHECK(ma.loss == mb.loss);
        CHECK(ma.grad_norm == mb.grad_norm);
      }
    }
  }
}

TEST_CASE("bf16 and fp8 training start where fp32 does and learn as it does", "[trainer]") {
  // Same seed and data. The first loss differs only by the GEMMs' rounding; later steps drift
  // apart (AdamW amplifies tiny gradient differences in so small a model) but fall alike.
  core::Config c = small_config();
  c.model.hidden_size = 128;
  c.train.steps = 6;
  std::map<std::string, std::vector<double>> losses;
  for (std::string precision : {"fp32", "bf16", "fp8"}) {
    c.train.precision = precision;
    core::Context ctx;
    core::Trainer t(c, ctx, "", false);
    for (int s = 0; s < c.train.steps; ++s) losses[precision].push_back(t.step().lm_loss);
  }
  const auto& ref = losses["fp32"];
  for (std::string precision : {"fp32", "bf16", "fp8"}) {
    const auto& l = losses[precision];
    INFO(precision << ": first loss " << l.front() << " (fp32 " << ref.front() << "), last "
                   << l.back() << " (fp32 " << ref.back() << ")");
    CHECK(l.back() < l.front() - 0.3);
    if (precision == "fp32") continue;
    CHECK(l.front() != ref.front());  // the low-precision GEMMs do run
    CHECK(std::fabs(l.front() - ref.front()) / ref.front() < (precision == "fp8" ? 3e-3 : 3e-4));
    CHECK(std::fabs(l.back() - ref.back()) / ref.back() < 0.03);
  }
}

TEST_CASE("gradient accumulation over micro-batches equals one large micro-batch", "[trainer]") {
  core::Config c = small_config();
  core::Config one = c;
  one.train.micro_batch_size = 8;  // the whole global batch at once
  core::Context ctx;
  core::Trainer a(c, ctx, "", false), b(one, ctx, "", false);
  for (int s = 0; s < 2; ++s) {
    auto ma = a.step(), mb = b.step();
    CHECK(ma.lm_loss == Approx(mb.lm_loss).epsilon(1e-5));
    CHECK(ma.mtp_loss == Approx(mb.mtp_loss).epsilon(1e-5));
    CHECK(ma.aux_loss == Approx(mb.aux_loss).epsilon(1e-5));
    CHECK(ma.grad_norm == Approx(mb.grad_norm).epsilon(1e-4));
  }
  auto pa = a.model().params().flat_params(), pb = b.model().params().flat_params();
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < pa.numel(); ++i) {
    diff = std::max(diff, (double)std::fabs(pa.ptr<float>()[i] - pb.ptr<float>()[i]));
    norm = std::max(norm, (double)std::fabs(pa.ptr<float>()[i]));
  }
  CHECK(diff < 1e-5 * std::max(1.0, norm));
}

TEST_CASE("aux-free bias moves by +-gamma against the global batch loads; it has no gradient", "[trainer][moe]") {
  core::Config c = small_config();
  c.model.moe.bias_update_rate = 0.01;
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  auto& ps = t.model().params();
  for (int id = 0; id < ps.size(); ++id)
    CHECK(ps.spec(id).name.find("e_score_correction_bias") == std::string::npos);
  t.step();
  for (core::Moe* moe : t.model().moe_layers()) {
    const auto& loads = moe->loads();  // counted over the step's 4 micro-batches
    int64_t total = 0;
    for (auto v : loads) total += v;
    CHECK(total == 8 * 8 * c.model.moe.experts_per_token);
    double mean = static_cast<double>(total) / loads.size();
    auto bias = ps.buffer(moe->bias_id());
    for (size_t e = 0; e < loads.size(); ++e) {
      double expected = loads[e] < mean ? 0.01 : loads[e] > mean ? -0.01 : 0.0;
      CHECK(bias.ptr<float>()[e] == Approx(expected).margin(1e-9));
    }
  }
}

TEST_CASE("balancer none and aux_loss leave the bias at zero", "[trainer][moe]") {
  for (std::string b : {"none", "aux_loss"}) {
    core::Config c = small_config();
    c.model.moe.balancer = b;
    core::Context ctx;
    core::Trainer t(c, ctx, "", false);
    auto m = t.step();
    if (b == "none") CHECK(m.aux_loss == 0.0);
    if (b == "aux_loss") CHECK(m.aux_loss > 0.0);
    for (core::Moe* moe : t.model().moe_layers()) {
      auto bias = t.model().params().buffer(moe->bias_id());
      for (int e = 0; e < bias.numel(); ++e) CHECK(bias.ptr<float>()[e] == 0.0f);
    }
  }
}

TEST_CASE("bf16 optimizer moments train like fp32 moments, within bf16 rounding", "[trainer]") {
  core::Config c = small_config();
  core::Config b = c;
  b.optim.moment_dtype = "bf16";
  core::Context ctx;
  core::Trainer a(c, ctx, "", false), t(b, ctx, "", false);
  REQUIRE(t.optimizer().moment1().dtype == core::DType::bf16);
  core::StepMetrics ma, mb;
  for (int s = 0; s < 3; ++s) {
    ma = a.step();
    mb = t.step();
  }
  CHECK(std::isfinite(mb.loss));
  CHECK(mb.lm_loss == Approx(ma.lm_loss).epsilon(1e-2));
  CHECK(mb.lm_loss != ma.lm_loss);  // the moments really are stored in bf16
}

TEST_CASE("a non-finite gradient skips the step before the update touches the weights", "[trainer]") {
  core::Config c = small_config();
  core::Context ctx;
  core::Trainer t(c, ctx, "", false);
  auto& ps = t.model().params();
  int head = ps.find("lm_head.weight");
  REQUIRE(head >= 0);
  ps.param(head).ptr<float>()[0] = std::nanf("");
  const float kept = ps.param(0).ptr<float>()[1];
  CHECK(t.step().skipped);  // run() stops after train.max_skipped_steps of these in a row
  CHECK(ps.param(0).ptr<float>()[1] == kept);  // no update was applied
}
