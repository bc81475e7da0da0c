// AdamW against the closed-form update evaluated step by step in double, for f32 and f64
// parameters, f32 / f64 / bf16 moments, with and without decay, and with grad_scale folded in.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "optim/adamw.hpp"

namespace {

using core::Tensor;

double bf16_round(double x) { return core::bf16_to_f32(core::f32_to_bf16(static_cast<float>(x))); }

// The documented update in double. round_moments applies bf16 storage rounding to the moments
// after each update, before they are used.
struct Reference {
  std::vector<double> p, m, v;
  bool round_moments = false;

  void step(const std::vector<double>& g_raw, const optim::AdamWHyper& h, int64_t t, double lr,
            double scale, bool decay) {
    for (size_t i = 0; i < p.size(); ++i) {
      double g = g_raw[i] * scale;
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * g;
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * g * g;
      if (round_moments) {
        m[i] = bf16_round(m[i]);
        v[i] = bf16_round(v[i]);
      }
      double mhat = m[i] / (1 - std::pow(h.beta1, t));
      double vhat = v[i] / (1 - std::pow(h.beta2, t));
      p[i] -= lr * (mhat / (std::sqrt(vhat) + h.eps) + (decay ? h.weight_decay * p[i] : 0.0));
    }
  }
};

const std::vector<double> kP0 = {0.5, -1.25, 2.0, 0.0, 0.03125};
const std::vector<std::vector<double>> kGrads = {
    {0.2, -0.7, 1.5, 0.01, -0.3},
    {-0.1, -0.4, 0.9, 0.02, 0.6},
    {0.35, 0.05, -1.1, -0.03, 0.25},
};

template <class T, class S>
std::vector<T> cast(const std::vector<S>& x) {
  return std::vector<T>(x.begin(), x.end());
}

template <class T>
void check_close(const std::vector<T>& got, const std::vector<double>& want, double tol,
                 const char* what) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO(what << "[" << i << "]: got " << static_cast<double>(got[i]) << ", want " << want[i]);
    CHECK(std::fabs(static_cast<double>(got[i]) - want[i]) <= tol * std::max(1.0, std::fabs(want[i])));
  }
}

// Three steps with same-dtype moments; checks parameters and both moments after every step.
template <class T>
void run_same_dtype(bool decay, double tol) {
  optim::AdamWHyper h;  // 0.9, 0.95, 1e-8, 0.1
  const double lr = 1e-2;
  const size_t n = kP0.size();
  std::vector<T> p = cast<T>(kP0), m(n, T(0)), v(n, T(0));
  Reference ref{kP0, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  for (int64_t t = 1; t <= 3; ++t) {
    std::vector<T> g = cast<T>(kGrads[t - 1]);
    optim::adamw_step(Tensor::of(p.data(), {int64_t(n)}), Tensor::of(g.data(), {int64_t(n)}),
                      Tensor::of(m.data(), {int64_t(n)}), Tensor::of(v.data(), {int64_t(n)}), h, t,
                      lr, 1.0, decay);
    ref.step(kGrads[t - 1], h, t, lr, 1.0, decay);
    INFO("step " << t << (decay ? " with decay" : " without decay"));
    check_close(p, ref.p, tol, "param");
    check_close(m, ref.m, tol, "m");
    check_close(v, ref.v, tol, "v");
  }
}

}  // namespace

TEST_CASE("adamw f32: three steps match the closed form, with and without decay", "[optim]") {
  run_same_dtype<float>(false, 2e-7);
  run_same_dtype<float>(true, 2e-7);
}

TEST_CASE("adamw f64: three steps match the closed form, with and without decay", "[optim]") {
  run_same_dtype<double>(false, 1e-14);
  run_same_dtype<double>(true, 1e-14);
}

TEST_CASE("adamw decay is decoupled: the difference is lr * wd * p", "[optim]") {
  optim::AdamWHyper h;
  const double lr = 1e-2;
  std::vector<double> p1 = {0.5, -2.0}, p2 = p1, g = {0.3, 0.3};
  std::vector<double> m1(2, 0), v1(2, 0), m2(2, 0), v2(2, 0);
  optim::adamw_step(Tensor::of(p1.data(), {2}), Tensor::of(g.data(), {2}), Tensor::of(m1.data(), {2}),
                    Tensor::of(v1.data(), {2}), h, 1, lr, 1.0, false);
  optim::adamw_step(Tensor::of(p2.data(), {2}), Tensor::of(g.data(), {2}), Tensor::of(m2.data(), {2}),
                    Tensor::of(v2.data(), {2}), h, 1, lr, 1.0, true);
  // Decay acts on the parameter alone, not through the moments (that would be L2, not AdamW).
  CHECK(m1 == m2);
  CHECK(v1 == v2);
  CHECK(p1[0] - p2[0] == Approx(lr * h.weight_decay * 0.5).epsilon(1e-9));
  CHECK(p1[1] - p2[1] == Approx(lr * h.weight_decay * -2.0).epsilon(1e-9));
}

TEST_CASE("adamw bf16 moments: stored rounded after each update, and the step uses them", "[optim]") {
  optim::AdamWHyper h;
  const double lr = 1e-2;
  const size_t n = kP0.size();
  for (bool decay : {false, true}) {
    std::vector<float> p = cast<float>(kP0);
    std::vector<uint16_t> m(n, 0), v(n, 0);
    Reference ref{kP0, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), true};
    Reference unrounded{kP0, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), false};
    for (int64_t t = 1; t <= 3; ++t) {
      std::vector<float> g = cast<float>(kGrads[t - 1]);
      optim::adamw_step(Tensor::of(p.data(), {int64_t(n)}), Tensor::of(g.data(), {int64_t(n)}),
                        Tensor(m.data(), core::DType::bf16, {int64_t(n)}),
                        Tensor(v.data(), core::DType::bf16, {int64_t(n)}), h, t, lr, 1.0, decay);
      ref.step(kGrads[t - 1], h, t, lr, 1.0, decay);
      unrounded.step(kGrads[t - 1], h, t, lr, 1.0, decay);
      INFO("step " << t << (decay ? " with decay" : " without decay"));
      for (size_t i = 0; i < n; ++i) {
        INFO("element " << i);
        CHECK(core::bf16_to_f32(m[i]) == static_cast<float>(ref.m[i]));
        CHECK(core::bf16_to_f32(v[i]) == static_cast<float>(ref.v[i]));
      }
      check_close(p, ref.p, 2e-7, "param");
    }
    // The tolerance above separates "update from the rounded moments" from "update from the
    // unrounded ones": at least one parameter differs between the two by far more than 2e-7.
    double worst = 0;
    for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(ref.p[i] - unrounded.p[i]));
    CHECK(worst > 1e-5);
  }
}

TEST_CASE("adamw bf16 moments: a value bf16 cannot hold is rounded on store", "[optim]") {
  optim::AdamWHyper h;
  float p = 1.0f, g = 1.0f;
  uint16_t m = 0, v = 0;
  optim::adamw_step(Tensor::of(&p, {1}), Tensor::of(&g, {1}), Tensor(&m, core::DType::bf16, {1}),
                    Tensor(&v, core::DType::bf16, {1}), h, 1, 1e-2, 1.0, false);
  // m = (1 - 0.9) * 1 = 0.1 and v = 0.05; neither is a bf16 value.
  CHECK(core::bf16_to_f32(m) != 0.1f);
  CHECK(core::bf16_to_f32(m) == 0.10009765625f);  // nearest bf16 to 0.1
  CHECK(core::bf16_to_f32(v) != 0.05f);
  CHECK(core::bf16_to_f32(v) == 0.0500488281f);  // nearest bf16 to 0.05
  CHECK(m == core::f32_to_bf16(0.1f));
}

TEST_CASE("adamw f64 parameters with bf16 moments", "[optim]") {
  optim::AdamWHyper h;
  const size_t n = kP0.size();
  std::vector<double> p = kP0;
  std::vector<uint16_t> m(n, 0), v(n, 0);
  Reference ref{kP0, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), true};
  for (int64_t t = 1; t <= 3; ++t) {
    std::vector<double> g = kGrads[t - 1];
    optim::adamw_step(Tensor::of(p.data(), {int64_t(n)}), Tensor::of(g.data(), {int64_t(n)}),
                      Tensor(m.data(), core::DType::bf16, {int64_t(n)}),
                      Tensor(v.data(), core::DType::bf16, {int64_t(n)}), h, t, 1e-2, 1.0, true);
    ref.step(kGrads[t - 1], h, t, 1e-2, 1.0, true);
    check_close(p, ref.p, 1e-14, "param");
  }
}

TEST_CASE("adamw grad_scale multiplies the gradient before the moments", "[optim]") {
  optim::AdamWHyper h;
  h.eps = 1e-2;  // large enough that the update is not invariant to the gradient's scale
  const double scale = 0.3;
  const size_t n = kP0.size();
  std::vector<double> p = kP0, m(n, 0), v(n, 0);
  Reference ref{kP0, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  Reference unscaled{kP0, std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  for (int64_t t = 1; t <= 2; ++t) {
    std::vector<double> g = kGrads[t - 1];
    optim::adamw_step(Tensor::of(p.data(), {int64_t(n)}), Tensor::of(g.data(), {int64_t(n)}),
                      Tensor::of(m.data(), {int64_t(n)}), Tensor::of(v.data(), {int64_t(n)}), h, t,
                      1e-2, scale, true);
    ref.step(kGrads[t - 1], h, t, 1e-2, scale, true);
    unscaled.step(kGrads[t - 1], h, t, 1e-2, 1.0, true);
    check_close(m, ref.m, 1e-14, "m");
    check_close(v, ref.v, 1e-14, "v");
    check_close(p, ref.p, 1e-14, "param");
  }
  CHECK(std::fabs(ref.p[2] - unscaled.p[2]) > 1e-4);  // the scale is visible in the parameters
  // After step 1 from zero moments, m = (1 - b1) * scale * g exactly as documented.
  std::vector<float> pf = {1.0f}, gf = {2.0f}, mf = {0.0f}, vf = {0.0f};
  optim::adamw_step(Tensor::of(pf.data(), {1}), Tensor::of(gf.data(), {1}), Tensor::of(mf.data(), {1}),
                    Tensor::of(vf.data(), {1}), h, 1, 1e-2, 0.25, false);
  CHECK(mf[0] == Approx(0.1 * 0.5).epsilon(1e-6));
  CHECK(vf[0] == Approx(0.05 * 0.25).epsilon(1e-6));
}

TEST_CASE("adamw parallel path over a large buffer matches the reference", "[optim]") {
  optim::AdamWHyper h;
  const size_t n = 100003;  // above the OpenMP threshold, and not a multiple of any vector width
  std::vector<double> p0 = testing::random_vector<double>(n, 11);
  std::vector<double> g0 = testing::random_vector<double>(n, 12);
  std::vector<float> p = cast<float>(p0), g = cast<float>(g0), m(n, 0.0f), v(n, 0.0f);
  Reference ref{cast<double>(cast<float>(p0)), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  std::vector<double> gd = cast<double>(g);
  for (int64_t t = 1; t <= 2; ++t) {
    optim::adamw_step(Tensor::of(p.data(), {int64_t(n)}), Tensor::of(g.data(), {int64_t(n)}),
                      Tensor::of(m.data(), {int64_t(n)}), Tensor::of(v.data(), {int64_t(n)}), h, t,
                      1e-3, 1.0, true);
    ref.step(gd, h, t, 1e-3, 1.0, true);
  }
  // Near-zero gradients make m/sqrt(v) sensitive, so compare with a tolerance on the step size.
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    if (std::fabs(p[i] - ref.p[i]) > 1e-6) ++bad;
  CHECK(bad == 0);
}

TEST_CASE("adamw rejects bad arguments", "[optim]") {
  optim::AdamWHyper h;
  std::vector<float> p(4, 1.0f), g(4, 1.0f), m(4, 0.0f), v(4, 0.0f), short_v(3, 0.0f);
  std::vector<double> gd(4, 1.0), md(4, 0.0), vd(4, 0.0);
  std::vector<int32_t> pi(4, 1);
  auto P = Tensor::of(p.data(), {4}), G = Tensor::of(g.data(), {4}), M = Tensor::of(m.data(), {4}),
       V = Tensor::of(v.data(), {4});
  CHECK_THROWS_AS(optim::adamw_step(P, G, M, V, h, 0, 1e-3, 1.0, true), core::InternalError);
  CHECK_THROWS_AS(optim::adamw_step(P, G, M, Tensor::of(short_v.data(), {3}), h, 1, 1e-3, 1.0, true),
                  core::InternalError);
  CHECK_THROWS_AS(optim::adamw_step(P, Tensor::of(gd.data(), {4}), M, V, h, 1, 1e-3, 1.0, true),
                  core::InternalError);
  CHECK_THROWS_AS(optim::adamw_step(P, G, Tensor::of(md.data(), {4}), Tensor::of(vd.data(), {4}), h, 1,
                                    1e-3, 1.0, true),
                  core::InternalError);
  CHECK_THROWS_AS(optim::adamw_step(Tensor::of(pi.data(), {4}), Tensor::of(pi.data(), {4}), M, V, h, 1,
                                    1e-3, 1.0, true),
                  core::InternalError);
  CHECK_THROWS_AS(optim::adamw_step(P, G, M, Tensor(v.data(), core::DType::bf16, {4}), h, 1, 1e-3, 1.0,
                                    true),
                  core::InternalError);
  // Valid arguments still pass after the rejections.
  CHECK_NOTHROW(optim::adamw_step(P, G, M, V, h, 1, 1e-3, 1.0, true));
  CHECK(p[0] < 1.0f);
}
