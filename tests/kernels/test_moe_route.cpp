// Tests of the routing plan, permute and combine: plan invariants, dropless routing under extreme
// imbalance and with no tokens, the permute -> identity -> combine round trip, and float64 finite
// differences of permute and combine.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/error.hpp"
#include "kernels/moe_ops.hpp"

using core::Tensor;

namespace {

struct Plan {
  std::vector<int32_t> offsets, src, pos;
};

Plan make_plan(const std::vector<int32_t>& idx, int64_t n, int k, int E) {
  core::Context ctx;
  ctx.threads = 2;
  Plan p;
  p.offsets.assign(E + 1, -1);
  p.src.assign(n * k, -1);
  p.pos.assign(n * k, -1);
  kernels::moe_plan(ctx, Tensor::of(idx.data(), {n, k}), E, Tensor::of(p.offsets.data(), {E + 1}),
                    Tensor::of(p.src.data(), {n * k}), Tensor::of(p.pos.data(), {n * k}));
  return p;
}

// Every invariant the plan promises, checked from first principles.
void check_plan(const Plan& p, const std::vector<int32_t>& idx, int64_t n, int k, int E) {
  REQUIRE(p.offsets[0] == 0);
  REQUIRE(p.offsets[E] == n * k);
  int64_t bad = 0;
  for (int e = 0; e < E; ++e) {
    const int64_t count = std::count(idx.begin(), idx.end(), e);
    if (p.offsets[e + 1] - p.offsets[e] != count) ++bad;
    for (int32_t r = p.offsets[e]; r < p.offsets[e + 1]; ++r) {
      if (idx[p.src[r]] != e) ++bad;                                    // row belongs to e
      if (r > p.offsets[e] && p.src[r] <= p.src[r - 1]) ++bad;          // stable: pair order
    }
  }
  std::vector<int> seen(n * k, 0);
  for (int64_t r = 0; r < n * k; ++r) {
    if (p.src[r] < 0 || p.src[r] >= n * k) {
      ++bad;
      continue;
    }
    ++seen[p.src[r]];
    if (p.pos[p.src[r]] != r) ++bad;  // pos is the inverse of src
  }
  for (int c : seen)
    if (c != 1) ++bad;
  CHECK(bad == 0);
}

// Gate decisions for n random tokens, optionally with one expert forced by a large bias.
void gate(int64_t n, int E, int k, int forced, double rs, std::vector<int32_t>& idx,
          std::vector<double>& weights) {
  kernels::GateShape g;
  g.num_experts = E;
  g.top_k = k;
  g.route_scale = rs;
  auto logits = testing::random_vector<double>(n * E, 71 + n, 2.0);
  std::vector<double> bias(E, 0.0), scores(n * E);
  if (forced >= 0) bias[forced] = 10.0;
  idx.assign(n * k, 0);
  weights.assign(n * k, 0.0);
  core::Context ctx;
  kernels::gate_forward(ctx, g, Tensor::of(logits.data(), {n, E}), Tensor::of(bias.data(), {E}),
                        Tensor::of(scores.data(), {n, E}), Tensor::of(idx.data(), {n, k}),
                        Tensor::of(weights.data(), {n, k}));
}

}  // namespace

TEST_CASE("moe_plan is a stable counting sort with pos the inverse of src", "[moe]") {
  std::vector<int32_t> idx;
  std::vector<double> w;
  gate(50, 8, 4, -1, 1.0, idx, w);
  check_plan(make_plan(idx, 50, 4, 8), idx, 50, 4, 8);
  // Hand-made, with repeated experts across slots and an empty expert.
  std::vector<int32_t> small = {2, 0, 0, 2, 2, 1};  // 3 tokens x 2 slots, expert 3 empty
  Plan p = make_plan(small, 3, 2, 4);
  CHECK(p.offsets == std::vector<int32_t>{0, 2, 3, 6, 6});
  CHECK(p.src == std::vector<int32_t>{1, 2, 5, 0, 3, 4});
  check_plan(p, small, 3, 2, 4);
}

TEST_CASE("routing is dropless under extreme imbalance and with no tokens", "[moe]") {
  std::vector<int32_t> idx;
  std::vector<double> w;
  SECTION("every token to one expert") {
    gate(64, 8, 1, 5, 1.0, idx, w);
    REQUIRE(std::count(idx.begin(), idx.end(), 5) == 64);
    Plan p = make_plan(idx, 64, 1, 8);
    CHECK(p.offsets == std::vector<int32_t>{0, 0, 0, 0, 0, 0, 64, 64, 64});
    check_plan(p, idx, 64, 1, 8);
  }
  SECTION("a forced expert in every token's top-k, most experts empty") {
    gate(5, 32, 2, 7, 1.0, idx, w);
    Plan p = make_plan(idx, 5, 2, 32);
    CHECK(p.offsets[8] - p.offsets[7] == 5);
    int empty = 0;
    for (int e = 0; e < 32; ++e) empty += p.offsets[e + 1] == p.offsets[e];
    CHECK(empty >= 32 - 6);
    check_plan(p, idx, 5, 2, 32);
  }
  SECTION("no tokens") {
    core::Context ctx;
    std::vector<int32_t> offsets(9, -1);
    Tensor idx0(nullptr, core::DType::i32, {0, 2}), pairs(nullptr, core::DType::i32, {0});
    Tensor rows(nullptr, core::DType::f32, {0, 16}), wts(nullptr, core::DType::f32, {0, 2});
    kernels::moe_plan(ctx, idx0, 8, Tensor::of(offsets.data(), {9}), pairs, pairs);
    CHECK(offsets == std::vector<int32_t>(9, 0));
    CHECK_NOTHROW(kernels::moe_permute(ctx, rows, pairs, 2, rows));
    CHECK_NOTHROW(kernels::moe_permute_backward(ctx, rows, pairs, 2, rows));
    CHECK_NOTHROW(kernels::moe_combine(ctx, rows, wts, pairs, rows));
    CHECK_NOTHROW(kernels::moe_combine_backward(ctx, rows, rows, wts, pairs, rows, wts));
  }
  SECTION("zero-width rows: combine_backward still writes dweights = 0") {
    core::Context ctx;
    std::vector<int32_t> pos = {1, 0, 3, 2};
    std::vector<float> w = {0.5f, 0.5f, 1.0f, 2.0f}, dw(4, NAN);
    Tensor empty2(nullptr, core::DType::f32, {2, 0}), empty4(nullptr, core::DType::f32, {4, 0});
    kernels::moe_combine_backward(ctx, empty2, empty4, Tensor::of(w.data(), {2, 2}),
                                  Tensor::of(pos.data(), {4}), empty4, Tensor::of(dw.data(), {2, 2}));
    CHECK(dw == std::vector<float>(4, 0.0f));
  }
}

TEST_CASE("permute -> identity experts -> combine returns route_scale * x", "[moe]") {
  const int64_t n = 40, D = 24;
  const int E = 16, k = 4;
  const double rs = 2.5;
  std::vector<int32_t> idx;
  std::vector<double> w;
  gate(n, E, k, -1, rs, idx, w);
  Plan p = make_plan(idx, n, k, E);
  auto x = testing::random_vector<double>(n * D, 80);
  std::vector<double> xs(n * k * D, NAN), y(n * D, 0.0);
  core::Context ctx;
  ctx.threads = 2;
  kernels::moe_permute(ctx, Tensor::of(x.data(), {n, D}), Tensor::of(p.src.data(), {n * k}), k,
                       Tensor::of(xs.data(), {n * k, D}));
  for (int64_t r = 0; r < n * k; ++r)
    for (int64_t i = 0; i < D; ++i) REQUIRE(xs[r * D + i] == x[(p.src[r] / k) * D + i]);
  kernels::moe_combine(ctx, Tensor::of(xs.data(), {n * k, D}), Tensor::of(w.data(), {n, k}),
                       Tensor::of(p.pos.data(), {n * k}), Tensor::of(y.data(), {n, D}));
  double worst = 0;
  for (int64_t i = 0; i < n * D; ++i) {
    const double err = std::fabs(y[i] - rs * x[i]);
    if (!(err <= worst)) worst = err;  // NaN sticks
  }
  CHECK(worst < 1e-12);
  // combine accumulates: a second call doubles y.
  kernels::moe_combine(ctx, Tensor::of(xs.data(), {n * k, D}), Tensor::of(w.data(), {n, k}),
                       Tensor::of(p.pos.data(), {n * k}), Tensor::of(y.data(), {n, D}));
  CHECK(y[3] == Approx(2 * rs * x[3]));
}

TEST_CASE("permute and combine match float64 finite differences", "[moe]") {
  const int64_t n = 7, D = 5;
  const int E = 6, k = 3;
  std::vector<int32_t> idx;
  std::vector<double> w;
  gate(n, E, k, -1, 1.0, idx, w);
  Plan p = make_plan(idx, n, k, E);
  core::Context ctx;
  ctx.threads = 2;
  const Tensor src = Tensor::of(p.src.data(), {n * k}), pos = Tensor::of(p.pos.data(), {n * k});

  SECTION("permute w.r.t. x") {
    auto x = testing::random_vector<double>(n * D, 90);
    auto r = testing::random_vector<double>(n * k * D, 91);
    auto init = testing::random_vector<double>(n * D, 92);
    auto dx = init;
    kernels::moe_permute_backward(ctx, Tensor::of(r.data(), {n * k, D}), pos, k,
                                  Tensor::of(dx.data(), {n, D}));
    for (size_t i = 0; i < dx.size(); ++i) dx[i] -= init[i];  // it accumulates
    std::vector<double> xs(n * k * D);
    testing::check_gradient("dx", x, dx, [&] {
      kernels::moe_permute(ctx, Tensor::of(x.data(), {n, D}), src, k, Tensor::of(xs.data(), {n * k, D}));
      return testing::dot(r, xs);
    });
  }
  SECTION("combine w.r.t. ys and weights") {
    auto ys = testing::random_vector<double>(n * k * D, 93);
    auto r = testing::random_vector<double>(n * D, 94);
    auto y0 = testing::random_vector<double>(n * D, 95);
    std::vector<double> dys(n * k * D, NAN), dw(n * k, NAN);
    kernels::moe_combine_backward(ctx, Tensor::of(r.data(), {n, D}), Tensor::of(ys.data(), {n * k, D}),
                                  Tensor::of(w.data(), {n, k}), pos, Tensor::of(dys.data(), {n * k, D}),
                                  Tensor::of(dw.data(), {n, k}));
    auto loss = [&] {
      auto y = y0;
      kernels::moe_combine(ctx, Tensor::of(ys.data(), {n * k, D}), Tensor::of(w.data(), {n, k}), pos,
                           Tensor::of(y.data(), {n, D}));
      return testing::dot(r, y);
    };
    testing::check_gradient("dys", ys, dys, loss);
    testing::check_gradient("dweights", w, dw, loss);
  }
}

TEST_CASE("routing ops reject bad plans and shapes", "[moe]") {
  core::Context ctx;
  std::vector<int32_t> idx = {0, 1, 2, 8}, offsets(9), src(4), pos(4);
  CHECK_THROWS_AS(kernels::moe_plan(ctx, Tensor::of(idx.data(), {2, 2}), 8, Tensor::of(offsets.data(), {9}),
                                    Tensor::of(src.data(), {4}), Tensor::of(pos.data(), {4})),
                  core::InternalError);  // expert 8 of 8
  CHECK_THROWS_AS(kernels::moe_plan(ctx, Tensor::of(idx.data(), {2, 2}), 9, Tensor::of(offsets.data(), {9}),
                                    Tensor::of(src.data(), {4}), Tensor::of(pos.data(), {4})),
                  core::InternalError);  // offsets must have E + 1 entries
  std::vector<float> x(2 * 3), xs(4 * 3);
  src = {0, 1, 2, 4};
  CHECK_THROWS_AS(kernels::moe_permute(ctx, Tensor::of(x.data(), {2, 3}), Tensor::of(src.data(), {4}), 2,
                                       Tensor::of(xs.data(), {4, 3})),
                  core::InternalError);  // src 4 of 4 rows
  src = {0, 1, 2, 3};
  CHECK_NOTHROW(kernels::moe_permute(ctx, Tensor::of(x.data(), {2, 3}), Tensor::of(src.data(), {4}), 2,
                                     Tensor::of(xs.data(), {4, 3})));
  CHECK_THROWS_AS(kernels::moe_permute(ctx, Tensor::of(x.data(), {2, 3}), Tensor::of(src.data(), {4}), 2,
                                       Tensor::of(xs.data(), {4, 2})),
                  core::InternalError);
  Tensor on_gpu = Tensor::of(xs.data(), {4, 3});
  on_gpu.device = core::Device::cuda;
  CHECK_THROWS_AS(kernels::moe_permute(ctx, Tensor::of(x.data(), {2, 3}), Tensor::of(src.data(), {4}), 2,
                                       on_gpu),
                  core::InternalError);
}
