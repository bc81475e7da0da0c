// The auxiliary-loss-free bias rule and MaxVio on hand-made expert loads.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "optim/expert_bias.hpp"

using core::Tensor;

TEST_CASE("expert bias: over-loaded -gamma, under-loaded +gamma, exactly average unchanged", "[optim]") {
  const std::vector<int64_t> loads = {10, 2, 6, 6};  // mean 6
  const float g = 0.001f;
  std::vector<float> b = {0.5f, -0.25f, 0.125f, 0.0f};
  optim::update_expert_bias(Tensor::of(b.data(), {4}), loads.data(), 4, 0.001);
  CHECK(b[0] == 0.5f - g);
  CHECK(b[1] == -0.25f + g);
  CHECK(b[2] == 0.125f);
  CHECK(b[3] == 0.0f);

  std::vector<double> bd = {0.5, -0.25, 0.125, 0.0};
  optim::update_expert_bias(Tensor::of(bd.data(), {4}), loads.data(), 4, 0.001);
  CHECK(bd[0] == 0.5 - 0.001);
  CHECK(bd[1] == -0.25 + 0.001);
  CHECK(bd[2] == 0.125);
  CHECK(bd[3] == 0.0);
}

TEST_CASE("expert bias with a mean that is not an integer", "[optim]") {
  const std::vector<int64_t> loads = {4, 3, 3};  // mean 10/3
  std::vector<double> b = {0, 0, 0};
  optim::update_expert_bias(Tensor::of(b.data(), {3}), loads.data(), 3, 0.01);
  CHECK(b[0] == -0.01);
  CHECK(b[1] == 0.01);
  CHECK(b[2] == 0.01);
}

TEST_CASE("expert bias: gamma 0 and zero tokens change nothing", "[optim]") {
  std::vector<float> b = {0.25f, -0.5f};
  const std::vector<int64_t> loads = {7, 1}, none = {0, 0};
  optim::update_expert_bias(Tensor::of(b.data(), {2}), loads.data(), 2, 0.0);
  optim::update_expert_bias(Tensor::of(b.data(), {2}), none.data(), 2, 0.001);
  CHECK(b[0] == 0.25f);
  CHECK(b[1] == -0.5f);
}

TEST_CASE("expert bias rejects mismatched sizes, negative loads and non-float bias", "[optim]") {
  std::vector<float> b(3, 0.0f);
  std::vector<int32_t> bi(2, 0);
  const std::vector<int64_t> loads = {1, 2}, negative = {3, -1, 1};
  CHECK_THROWS_AS(optim::update_expert_bias(Tensor::of(b.data(), {3}), loads.data(), 2, 0.001),
                  core::InternalError);
  CHECK_THROWS_AS(optim::update_expert_bias(Tensor::of(b.data(), {3}), negative.data(), 3, 0.001),
                  core::InternalError);
  CHECK_THROWS_AS(optim::update_expert_bias(Tensor::of(bi.data(), {2}), loads.data(), 2, 0.001),
                  core::InternalError);
  CHECK_THROWS_AS(optim::update_expert_bias(Tensor::of(b.data(), {2}), loads.data(), 2, -0.001),
                  core::InternalError);
}

TEST_CASE("max_violation on hand-made loads", "[optim]") {
  const std::vector<int64_t> skewed = {10, 2, 6, 6};  // (10 - 6) / 6
  CHECK(optim::max_violation(skewed.data(), 4) == Approx(2.0 / 3.0).epsilon(1e-15));
  const std::vector<int64_t> balanced = {5, 5, 5};
  CHECK(optim::max_violation(balanced.data(), 3) == 0.0);
  const std::vector<int64_t> one_hot = {0, 0, 0, 8};  // (8 - 2) / 2
  CHECK(optim::max_violation(one_hot.data(), 4) == Approx(3.0).epsilon(1e-15));
  const std::vector<int64_t> none = {0, 0, 0};
  CHECK(optim::max_violation(none.data(), 3) == 0.0);
}
