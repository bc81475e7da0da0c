// Tests of the row-wise ops: RMSNorm, RoPE, SwiGLU and the embedding, forward against direct
// formulas in double and backward by float64 finite differences; small shapes plus one shape
// above the OpenMP threshold for each.
#include <cmath>
#include <limits>
#include <vector>

#include "common/gradcheck.hpp"
#include "kernels/ops.hpp"

using core::Tensor;

namespace {

double rel_err(double got, double want) {
  return std::fabs(got - want) / std::max(1.0, std::fabs(want));
}

}  // namespace

TEST_CASE("rmsnorm forward and gradients", "[ops][rmsnorm]") {
  kernels::Context ctx;
  for (auto [N, D] : {std::pair<int, int>{6, 8}, {300, 256}}) {
    INFO("N " << N << " D " << D);
    const double eps = 1e-5;
    auto x = testing::random_vector<double>(N * D, 81, 2.0),
         w = testing::random_vector<double>(D, 82);
    auto r = testing::random_vector<double>(N * D, 83);
    std::vector<double> y(N * D), rstd(N);
    // [B, T, D] view: rows fold.
    auto tx = Tensor::of(x.data(), {2, N / 2, D}), ty = Tensor::of(y.data(), {2, N / 2, D});
    auto tw = Tensor::of(w.data(), {D}), trstd = Tensor::of(rstd.data(), {N});
    kernels::rmsnorm_forward(ctx, tx, tw, eps, ty, trstd);
    double worst = 0;
    for (int n = 0; n < N; ++n) {
      double ss = 0;
      for (int d = 0; d < D; ++d) ss += x[n * D + d] * x[n * D + d];
      const double want_r = 1.0 / std::sqrt(ss / D + eps);
      worst = std::max(worst, rel_err(rstd[n], want_r));
      for (int d = 0; d < D; ++d)
        worst = std::max(worst, rel_err(y[n * D + d], x[n * D + d] * want_r * w[d]));
    }
    CHECK(worst <= 1e-13);

    auto loss = [&] {
      kernels::rmsnorm_forward(ctx, tx, tw, eps, ty, trstd);
      return testing::dot(r, y);
    };
    loss();
    std::vector<double> dx(N * D, std::numeric_limits<double>::quiet_NaN());
    std::vector<double> dw_init = testing::random_vector<double>(D, 84), dw = dw_init;
    auto tr = Tensor::of(r.data(), {2, N / 2, D});
    kernels::rmsnorm_backward_input(ctx, tr, tx, tw, trstd, Tensor::of(dx.data(), {2, N / 2, D}));
    kernels::rmsnorm_backward_weight(ctx, tr, tx, trstd, Tensor::of(dw.data(), {D}));
    for (int d = 0; d < D; ++d) dw[d] -= dw_init[d];
    testing::check_gradient("dx", x, dx, loss);
    testing::check_gradient("dw", w, dw, loss);
  }
  std::vector<double> a(12), b(4), c(3);
  CHECK_THROWS_AS(
      kernels::rmsnorm_forward(ctx, Tensor::of(a.data(), {3, 4}), Tensor::of(c.data(), {3}), 1e-5,
                               Tensor::of(a.data(), {3, 4}), Tensor::of(c.data(), {3})),
      core::InternalError);
  CHECK_THROWS_AS(
      kernels::rmsnorm_forward(ctx, Tensor::of(a.data(), {3, 4}), Tensor::of(b.data(), {4}), 1e-5,
                               Tensor::of(a.data(), {4, 3}), Tensor::of(c.data(), {3})),
      core::InternalError);
}

namespace {

struct RopeCase {
  int B, T, H, Dh, offset, rope_dim;
  double theta;
};

// The rotation written out: pair i of head h in row r turns by (r % T) * theta^(-2i / rope_dim).
template <class T>
std::vector<double> direct_rope(const RopeCase& c, const std::vector<T>& x, bool inverse) {
  std::vector<double> y(x.begin(), x.end());
  for (int row = 0; row < c.B * c.T; ++row)
    for (int h = 0; h < c.H; ++h)
      for (int i = 0; i < c.rope_dim / 2; ++i) {
        const double a =
            (inverse ? -1.0 : 1.0) * (row % c.T) * std::pow(c.theta, -2.0 * i / c.rope_dim);
        const size_t p = (size_t(row) * c.H + h) * c.Dh + c.offset + 2 * i;
        y[p] = double(x[p]) * std::cos(a) - double(x[p + 1]) * std::sin(a);
        y[p + 1] = double(x[p]) * std::sin(a) + double(x[p + 1]) * std::cos(a);
      }
  return y;
}

template <class T>
void check_rope(const RopeCase& c, double tol) {
  kernels::Context ctx;
  const int n = c.B * c.T * c.H * c.Dh;
  auto x0 = testing::random_vector<T>(n, 91);
  auto x = x0;
  auto tx = Tensor::of(x.data(), {c.B * c.T, c.H, c.Dh});
  kernels::rope(ctx, tx, c.T, c.offset, c.rope_dim, c.theta, false);
  auto want = direct_rope(c, x0, false);
  double worst = 0;
  for (int i = 0; i < n; ++i) worst = std::max(worst, rel_err(x[i], want[i]));
  INFO("B " << c.B << " T " << c.T << " H " << c.H << " Dh " << c.Dh << " offset " << c.offset
            << " rope_dim " << c.rope_dim);
  CHECK(worst <= tol);
  kernels::rope(ctx, tx, c.T, c.offset, c.rope_dim, c.theta, true);
  worst = 0;
  for (int i = 0; i < n; ++i) worst = std::max(worst, rel_err(x[i], x0[i]));
  CHECK(worst <= tol);
}

}  // namespace

TEST_CASE("rope matches the rotation formula and inverse undoes it", "[ops][rope]") {
  check_rope<double>({2, 5, 2, 10, 2, 6, 10.0}, 1e-14);
  check_rope<double>({1, 7, 1, 4, 0, 4, 10000.0}, 1e-14);
  check_rope<float>({2, 5, 2, 10, 4, 6, 10000.0}, 1e-6);
  // Above the parallel threshold, MLA-like: 64 rope dims after 128 nope dims.
  check_rope<float>({2, 64, 4, 192, 128, 64, 10000.0}, 1e-5);
}

TEST_CASE("rope gradient is the inverse rotation", "[ops][rope]") {
  kernels::Context ctx;
  const RopeCase c{2, 5, 2, 8, 2, 4, 10.0};
  const int n = c.B * c.T * c.H * c.Dh;
  auto x = testing::random_vector<double>(n, 92), r = testing::random_vector<double>(n, 93);
  auto loss = [&] {
    std::vector<double> y = x;
    kernels::rope(ctx, Tensor::of(y.data(), {c.B * c.T, c.H, c.Dh}), c.T, c.offset, c.rope_dim,
                  c.theta, false);
    return testing::dot(r, y);
  };
  std::vector<double> dx = r;
  kernels::rope(ctx, Tensor::of(dx.data(), {c.B * c.T, c.H, c.Dh}), c.T, c.offset, c.rope_dim,
                c.theta, true);
  testing::check_gradient("dx", x, dx, loss);

  std::vector<double> buf(n);
  auto tb = Tensor::of(buf.data(), {c.B * c.T, c.H, c.Dh});
  CHECK_NOTHROW(kernels::rope(ctx, tb, c.T, 4, 4, 10.0, false));
  CHECK_THROWS_AS(kernels::rope(ctx, tb, c.T, 6, 4, 10.0, false), core::InternalError);  // past Dh
  CHECK_THROWS_AS(kernels::rope(ctx, tb, c.T, 0, 3, 10.0, false), core::InternalError);  // odd
  CHECK_THROWS_AS(kernels::rope(ctx, tb, 3, 0, 4, 10.0, false), core::InternalError);    // 10 % 3
  CHECK_THROWS_AS(
      kernels::rope(ctx, Tensor::of(buf.data(), {c.B * c.T, c.H * c.Dh}), c.T, 0, 4, 10.0, false),
      core::InternalError);
}

TEST_CASE("swiglu forward and gradient", "[ops][swiglu]") {
  kernels::Context ctx;
  for (auto [N, F] : {std::pair<int, int>{6, 5}, {200, 200}}) {
    INFO("N " << N << " F " << F);
    // Amplitude 12 reaches the saturated ends of the sigmoid.
    auto h = testing::random_vector<double>(N * 2 * F, 101, 12.0),
         r = testing::random_vector<double>(N * F, 102);
    std::vector<double> y(N * F);
    auto th = Tensor::of(h.data(), {N, 2 * F}), ty = Tensor::of(y.data(), {N, F});
    kernels::swiglu_forward(ctx, th, ty);
    double worst = 0;
    for (int n = 0; n < N; ++n)
      for (int f = 0; f < F; ++f) {
        const double g = h[n * 2 * F + f], u = h[n * 2 * F + F + f];
        worst = std::max(worst, rel_err(y[n * F + f], g / (1 + std::exp(-g)) * u));
      }
    CHECK(worst <= 1e-14);
    auto loss = [&] {
      kernels::swiglu_forward(ctx, th, ty);
      return testing::dot(r, y);
    };
    std::vector<double> dh(N * 2 * F, std::numeric_limits<double>::quiet_NaN());
    kernels::swiglu_backward(ctx, Tensor::of(r.data(), {N, F}), th,
                             Tensor::of(dh.data(), {N, 2 * F}));
    testing::check_gradient("dh", h, dh, loss);
  }
  std::vector<float> hf(24), yf(12);
  CHECK_THROWS_AS(
      kernels::swiglu_forward(ctx, Tensor::of(hf.data(), {4, 6}), Tensor::of(yf.data(), {4, 3, 1})),
      core::InternalError);
  CHECK_THROWS_AS(
      kernels::swiglu_forward(ctx, Tensor::of(hf.data(), {3, 8}), Tensor::of(yf.data(), {3, 3})),
      core::InternalError);
  std::vector<double> yd(12);
  CHECK_THROWS_AS(
      kernels::swiglu_forward(ctx, Tensor::of(hf.data(), {4, 6}), Tensor::of(yd.data(), {4, 3})),
      core::InternalError);
}

TEST_CASE("embedding lookup, scatter-add gradient, token range", "[ops][embedding]") {
  kernels::Context ctx;
  for (auto [N, V, D] : {std::array<int, 3>{9, 5, 4}, {400, 17, 128}}) {
    INFO("N " << N << " V " << V << " D " << D);
    std::vector<int32_t> tokens(N);
    for (int n = 0; n < N; ++n) tokens[n] = int32_t((n * 7 + n / 3) % V);  // repeats on purpose
    auto table = testing::random_vector<double>(V * D, 111),
         r = testing::random_vector<double>(N * D, 112);
    std::vector<double> out(N * D);
    auto tt = Tensor::of(tokens.data(), {N}), tout = Tensor::of(out.data(), {N, D});
    auto ttable = Tensor::of(table.data(), {V, D});
    kernels::embedding_forward(ctx, ttable, tt, tout);
    bool same = true;
    for (int n = 0; n < N; ++n)
      for (int d = 0; d < D; ++d) same = same && out[n * D + d] == table[tokens[n] * D + d];
    CHECK(same);
    auto loss = [&] {
      kernels::embedding_forward(ctx, ttable, tt, tout);
      return testing::dot(r, out);
    };
    std::vector<double> init = testing::random_vector<double>(V * D, 113), dtable = init;
    kernels::embedding_backward(ctx, Tensor::of(r.data(), {N, D}), tt,
                                Tensor::of(dtable.data(), {V, D}));
    for (int i = 0; i < V * D; ++i) dtable[i] -= init[i];
    testing::check_gradient("dtable", table, dtable, loss);
  }
  std::vector<float> table(5 * 3), out(2 * 3);
  std::vector<int32_t> tokens = {1, 5};
  auto call = [&] {
    kernels::embedding_forward(ctx, Tensor::of(table.data(), {5, 3}),
                               Tensor::of(tokens.data(), {2}), Tensor::of(out.data(), {2, 3}));
  };
  CHECK_THROWS_WITH(call(), Catch::Contains("token 5 at position 1"));
  tokens[1] = -1;
  CHECK_THROWS_AS(call(), core::InternalError);
  tokens[1] = 4;
  CHECK_NOTHROW(call());
  CHECK(out[3] == table[12]);
  CHECK_THROWS_AS(
      kernels::embedding_backward(ctx, Tensor::of(out.data(), {2, 3}),
                                  Tensor::of(tokens.data(), {2}), Tensor::of(table.data(), {3, 5})),
      core::InternalError);
}
