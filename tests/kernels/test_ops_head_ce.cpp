// Tests of the fused output head + cross-entropy: forward against full logits in double, gradients
// by float64 finite differences, with vocabulary and token chunks smaller than V and N so that
// every chunk boundary (and a chunk of only ignored tokens) is crossed.
#include <cmath>
#include <limits>
#include <vector>

#include "common/gradcheck.hpp"
#include "kernels/cpu/head_ce.hpp"
#include "kernels/ops.hpp"

using core::Tensor;

namespace {

constexpr int N = 7, D = 6, V = 37;
// Positions 3..5 form one whole token chunk of ignored tokens when chunks.tokens = 3.
const std::vector<int32_t> kTargets = {5, 36, 0, -1, -100, -1, 17};
const kernels::cpu::HeadCeChunks kSmall{3, 8};

template <class T>
void naive_head_ce(const std::vector<T>& x, const std::vector<T>& W, std::vector<double>& losses,
                   std::vector<double>& lse) {
  losses.assign(N, 0.0);
  lse.assign(N, 0.0);
  for (int n = 0; n < N; ++n) {
    std::vector<double> logits(V);
    double m = -std::numeric_limits<double>::infinity();
    for (int v = 0; v < V; ++v) {
      double s = 0;
      for (int d = 0; d < D; ++d) s += double(x[n * D + d]) * double(W[v * D + d]);
      logits[v] = s;
      m = std::max(m, s);
    }
    double sum = 0;
    for (double l : logits) sum += std::exp(l - m);
    lse[n] = m + std::log(sum);
    if (kTargets[n] >= 0) losses[n] = lse[n] - logits[kTargets[n]];
  }
}

template <class T>
void check_forward(bool small_chunks, double tol) {
  kernels::Context ctx;
  // Large amplitudes spread the logits so that the online max actually moves between chunks.
  auto x = testing::random_vector<T>(N * D, 51, 3.0), W = testing::random_vector<T>(V * D, 52, 3.0);
  std::vector<T> losses(N, T(-7)), lse(N);
  if (small_chunks)
    kernels::cpu::head_ce_forward<T>(x.data(), W.data(), kTargets.data(), N, D, V, losses.data(),
                                     lse.data(), kSmall);
  else
    kernels::head_ce_forward(ctx, Tensor::of(x.data(), {N, D}), Tensor::of(W.data(), {V, D}),
                             Tensor::of(kTargets.data(), {N}), Tensor::of(losses.data(), {N}),
                             Tensor::of(lse.data(), {N}));
  std::vector<double> want_losses, want_lse;
  naive_head_ce(x, W, want_losses, want_lse);
  INFO("small chunks " << small_chunks);
  for (int n = 0; n < N; ++n) {
    INFO("token " << n << " target " << kTargets[n]);
    CHECK(std::fabs(losses[n] - want_losses[n]) <= tol * std::max(1.0, std::fabs(want_losses[n])));
    CHECK(std::fabs(lse[n] - want_lse[n]) <= tol * std::max(1.0, std::fabs(want_lse[n])));
    if (kTargets[n] < 0) CHECK(losses[n] == 0);
  }
}

void check_backward(bool small_chunks) {
  kernels::Context ctx;
  auto x = testing::random_vector<double>(N * D, 61, 2.0),
       W = testing::random_vector<double>(V * D, 62, 2.0);
  std::vector<double> losses(N), lse(N);
  const double scale = 0.37;
  auto forward = [&] {
    if (small_chunks)
      kernels::cpu::head_ce_forward<double>(x.data(), W.data(), kTargets.data(), N, D, V,
                                            losses.data(), lse.data(), kSmall);
    else
      kernels::head_ce_forward(ctx, Tensor::of(x.data(), {N, D}), Tensor::of(W.data(), {V, D}),
                               Tensor::of(kTargets.data(), {N}), Tensor::of(losses.data(), {N}),
                               Tensor::of(lse.data(), {N}));
    double s = 0;
    for (double l : losses) s += scale * l;
    return s;
  };
  forward();
  // dx is written (NaN must not survive), dW accumulates onto what is there.
  std::vector<double> dx(N * D, std::numeric_limits<double>::quiet_NaN());
  std::vector<double> dW_init = testing::random_vector<double>(V * D, 63), dW = dW_init;
  if (small_chunks)
    kernels::cpu::head_ce_backward<double>(x.data(), W.data(), kTargets.data(), lse.data(), N, D, V,
                                           scale, dx.data(), dW.data(), kSmall);
  else
    kernels::head_ce_backward(ctx, Tensor::of(x.data(), {N, D}), Tensor::of(W.data(), {V, D}),
                              Tensor::of(kTargets.data(), {N}), Tensor::of(lse.data(), {N}), scale,
                              Tensor::of(dx.data(), {N, D}), Tensor::of(dW.data(), {V, D}));
  for (size_t i = 0; i < dW.size(); ++i) dW[i] -= dW_init[i];
  INFO("small chunks " << small_chunks);
  for (int n = 3; n < 6; ++n)
    for (int d = 0; d < D; ++d) CHECK(dx[n * D + d] == 0.0);  // ignored tokens
  testing::check_gradient("dx", x, dx, forward);
  testing::check_gradient("dW", W, dW, forward, 1e-6, 1e-6, V * D);
}

}  // namespace

TEST_CASE("head_ce forward matches full logits", "[ops][head_ce]") {
  check_forward<double>(false, 1e-12);
  check_forward<double>(true, 1e-12);
  check_forward<float>(false, 2e-5);
  check_forward<float>(true, 2e-5);
}

TEST_CASE("head_ce backward matches finite differences", "[ops][head_ce]") {
  check_backward(false);
  check_backward(true);
}

TEST_CASE("head_ce backward skips absent outputs", "[ops][head_ce]") {
  kernels::Context ctx;
  auto x = testing::random_vector<double>(N * D, 71), W = testing::random_vector<double>(V * D, 72);
  std::vector<double> losses(N), lse(N), dx(N * D), dx_only(N * D), dW(V * D, 0.0),
      dW_only(V * D, 0.0);
  auto tx = Tensor::of(x.data(), {N, D}), tW = Tensor::of(W.data(), {V, D});
  auto tt = Tensor::of(kTargets.data(), {N}), tlse = Tensor::of(lse.data(), {N});
  kernels::head_ce_forward(ctx, tx, tW, tt, Tensor::of(losses.data(), {N}), tlse);
  kernels::head_ce_backward(ctx, tx, tW, tt, tlse, 1.0, Tensor::of(dx.data(), {N, D}),
                            Tensor::of(dW.data(), {V, D}));
  kernels::head_ce_backward(ctx, tx, tW, tt, tlse, 1.0, Tensor::of(dx_only.data(), {N, D}),
                            Tensor());
  kernels::head_ce_backward(ctx, tx, tW, tt, tlse, 1.0, Tensor(),
                            Tensor::of(dW_only.data(), {V, D}));
  CHECK(dx_only == dx);
  CHECK(dW_only == dW);
}

TEST_CASE("head_ce rejects bad targets and shapes", "[ops][head_ce]") {
  kernels::Context ctx;
  std::vector<double> x(N * D), W(V * D), losses(N), lse(N);
  std::vector<int32_t> targets = kTargets;
  auto call = [&](const Tensor& tW) {
    kernels::head_ce_forward(ctx, Tensor::of(x.data(), {N, D}), tW, Tensor::of(targets.data(), {N}),
                             Tensor::of(losses.data(), {N}), Tensor::of(lse.data(), {N}));
  };
  CHECK_NOTHROW(call(Tensor::of(W.data(), {V, D})));
  CHECK_THROWS_AS(call(Tensor::of(W.data(), {D, V})), core::InternalError);
  targets[2] = V;
  CHECK_THROWS_WITH(call(Tensor::of(W.data(), {V, D})), Catch::Contains("position 2"));
}
