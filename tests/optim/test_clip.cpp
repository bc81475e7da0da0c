// Global gradient norm and the clipping factor on vectors with known norms.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "optim/clip.hpp"

using core::Tensor;

TEST_CASE("global_norm of 3-4-12 spread over f32 and f64 tensors is 13", "[optim]") {
  std::vector<float> a = {3.0f, 0.0f};
  std::vector<double> b = {4.0};
  std::vector<float> c = {-12.0f};
  std::vector<Tensor> grads = {Tensor::of(a.data(), {2}), Tensor::of(b.data(), {1}),
                               Tensor::of(c.data(), {1, 1})};
  CHECK(optim::global_norm(grads) == 13.0);
  CHECK(optim::global_norm({}) == 0.0);
  CHECK(optim::global_norm({Tensor::of(a.data(), {0})}) == 0.0);
}

TEST_CASE("global_norm over a large buffer takes the parallel path exactly", "[optim]") {
  // 0.5^2 = 0.25 and every partial sum is exact in double, whatever the thread split.
  std::vector<float> a(100000, 0.5f);
  a[7] = -0.5f;
  CHECK(optim::global_norm({Tensor::of(a.data(), {100000})}) == std::sqrt(25000.0));
}

TEST_CASE("global_norm accumulates f32 gradients in double", "[optim]") {
  // A million squares of 1e-3: summed in float the result keeps ~7 digits at best (and loses more
  // to the long sums); in double, in any order or thread split, it is good to ~12.
  std::vector<float> a(1000000, 1e-3f);
  const double x = static_cast<double>(1e-3f);
  double n = optim::global_norm({Tensor::of(a.data(), {1000000})});
  CHECK(n * n == Approx(1e6 * x * x).epsilon(1e-10));
}

TEST_CASE("clip_factor: 1 below the threshold, max/(norm+1e-6) above, 1 when disabled", "[optim]") {
  CHECK(optim::clip_factor(0.5, 1.0) == 1.0);
  CHECK(optim::clip_factor(0.0, 1.0) == 1.0);
  CHECK(optim::clip_factor(13.0, 1.0) == Approx(1.0 / (13.0 + 1e-6)).epsilon(1e-15));
  CHECK(optim::clip_factor(4.0, 2.0) == Approx(0.5).epsilon(1e-6));
  CHECK(optim::clip_factor(4.0, 2.0) < 0.5);  // the 1e-6 is in the denominator
  CHECK(optim::clip_factor(13.0, 0.0) == 1.0);
  CHECK(optim::clip_factor(1e30, -1.0) == 1.0);
  CHECK(std::isnan(optim::clip_factor(std::nan(""), 1.0)));
  CHECK(optim::clip_factor(INFINITY, 1.0) == 0.0);
}

TEST_CASE("global_norm rejects non-float gradients", "[optim]") {
  std::vector<int32_t> a = {1, 2};
  CHECK_THROWS_AS(optim::global_norm({Tensor::of(a.data(), {2})}), core::InternalError);
}
