// Tests of the balance loss: values against a direct transcription of the formula, and float64
// finite differences of its gradient, sequence-wise (two segments) and batch-wise.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/error.hpp"
#include "kernels/moe_ops.hpp"

using core::Tensor;

namespace {

// L = alpha * mean_seg sum_i f_i P_i, written out as in the recipe.
double reference_loss(const std::vector<double>& s, int64_t n, int64_t E, int k, int64_t T,
                      double alpha) {
  double total = 0;
  const int64_t segments = n / T;
  for (int64_t sg = 0; sg < segments; ++sg) {
    std::vector<double> f(E, 0.0), P(E, 0.0);
    for (int64_t t = sg * T; t < (sg + 1) * T; ++t) {
      std::vector<int> order(E);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return s[t * E + a] > s[t * E + b]; });
      for (int j = 0; j < k; ++j) f[order[j]] += static_cast<double>(E) / (k * T);
      double z = 0;
      for (int64_t e = 0; e < E; ++e) z += s[t * E + e];
      for (int64_t e = 0; e < E; ++e) P[e] += s[t * E + e] / z / T;
    }
    for (int64_t e = 0; e < E; ++e) total += f[e] * P[e];
  }
  return alpha * total / segments;
}

template <class T>
double loss_of(const std::vector<T>& s, int64_t n, int64_t E, int k, int64_t seg, double alpha) {
  core::Context ctx;
  ctx.threads = 2;
  return kernels::balance_loss_forward(ctx, Tensor::of(s.data(), {n, E}), k, seg, alpha);
}

// Sigmoid-like scores in (0.05, 0.95).
std::vector<double> random_scores(size_t count, uint64_t seed) {
  auto v = testing::random_vector<double>(count, seed, 0.45);
  for (double& x : v) x += 0.5;
  return v;
}

}  // namespace

TEST_CASE("balance loss equals the recipe's formula", "[moe]") {
  const int64_t E = 16, T = 12;
  const int k = 4;
  auto s = random_scores(3 * T * E, 41);
  const double alpha = 0.37;
  for (int64_t seg : {T, 3 * T}) {
    INFO("segment_len " << seg);
    const double want = reference_loss(s, 3 * T, E, k, seg, alpha);
    CHECK(loss_of(s, 3 * T, E, k, seg, alpha) == Approx(want).epsilon(1e-12));
    std::vector<float> sf(s.begin(), s.end());
    CHECK(loss_of(sf, 3 * T, E, k, seg, alpha) == Approx(want).epsilon(1e-5));
  }
  // Sequence-wise and batch-wise differ on data whose sequences prefer different experts.
  std::vector<double> skew(2 * T * E, 0.1);
  for (int64_t t = 0; t < 2 * T; ++t)
    for (int j = 0; j < k; ++j) skew[t * E + (t < T ? j : 8 + j)] = 0.9;
  const double seq = loss_of(skew, 2 * T, E, k, T, 1.0), batch = loss_of(skew, 2 * T, E, k, 2 * T, 1.0);
  CHECK(seq == Approx(reference_loss(skew, 2 * T, E, k, T, 1.0)));
  CHECK(batch == Approx(reference_loss(skew, 2 * T, E, k, 2 * T, 1.0)));
  CHECK(seq > 1.5 * batch);
  // Perfect balance: f_i = 1 and P_i = 1/E everywhere, so L = alpha.
  std::vector<double> flat(T * E, 0.5);
  for (int64_t t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j) flat[t * E + (t * k + j) % E] = 0.5 + 1e-9;
  CHECK(loss_of(flat, T, E, k, T, 0.25) == Approx(0.25).epsilon(1e-6));
}

TEST_CASE("balance loss gradient matches float64 finite differences", "[moe]") {
  const int64_t E = 8, T = 6, n = 2 * T;
  const int k = 2;
  const double alpha = 50.0, dloss = 0.7;  // large alpha keeps the gradients well above tolerance
  for (int64_t seg : {T, n}) {
    INFO((seg == T ? "sequence-wise (2 sequences)" : "batch-wise"));
    auto s = random_scores(n * E, 50 + seg);
    auto init = testing::random_vector<double>(n * E, 60);
    auto ds = init;  // accumulates
    core::Context ctx;
    ctx.threads = 2;
    kernels::balance_loss_backward(ctx, Tensor::of(s.data(), {n, E}), k, seg, alpha, dloss,
                                   Tensor::of(ds.data(), {n, E}));
    for (size_t i = 0; i < ds.size(); ++i) ds[i] = (ds[i] - init[i]) / dloss;
    double max_abs = 0;
    for (double v : ds) max_abs = std::max(max_abs, std::fabs(v));
    CHECK(max_abs > 1e-2);
    testing::check_gradient("dscores", s, ds, [&] { return loss_of(s, n, E, k, seg, alpha); }, 1e-6,
                            1e-7);
  }
}

TEST_CASE("balance loss handles zero tokens and rejects bad segments", "[moe]") {
  core::Context ctx;
  Tensor none(nullptr, core::DType::f32, {0, 8});
  CHECK(kernels::balance_loss_forward(ctx, none, 2, 4, 1.0) == 0.0);
  CHECK_NOTHROW(kernels::balance_loss_backward(ctx, none, 2, 4, 1.0, 1.0, none));
  std::vector<float> s(6 * 8, 0.5f);
  CHECK_THROWS_AS(kernels::balance_loss_forward(ctx, Tensor::of(s.data(), {6, 8}), 2, 4, 1.0),
                  core::InternalError);  // 4 does not divide 6
  CHECK_THROWS_AS(kernels::balance_loss_forward(ctx, Tensor::of(s.data(), {6, 8}), 9, 6, 1.0),
                  core::InternalError);  // top_k above the expert count
}
