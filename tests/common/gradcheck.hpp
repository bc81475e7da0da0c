// Test helpers shared by every test folder: deterministic random data and float64 central
// finite-difference checks of analytic gradients.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace testing {

// splitmix64: deterministic, seedable, platform-independent.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform values in [-amp, amp], a pure function of (seed, index).
template <class T>
void fill_random(std::vector<T>& v, uint64_t seed, double amp = 1.0) {
  for (size_t i = 0; i < v.size(); ++i) {
    double u = static_cast<double>(mix64(seed * 0x100000001b3ull + i) >> 11) * 0x1.0p-53;
    v[i] = static_cast<T>((2.0 * u - 1.0) * amp);
  }
}

template <class T>
std::vector<T> random_vector(size_t n, uint64_t seed, double amp = 1.0) {
  std::vector<T> v(n);
  fill_random(v, seed, amp);
  return v;
}

// Compares analytic[i] with the central difference (loss(x + h e_i) - loss(x - h e_i)) / 2h for
// every i (or an even sample of max_checks indices when x is larger). loss() must read x.
// Fails the current test with the worst index when |a - n| > tol * max(1, |a|, |n|).
inline void check_gradient(const std::string& name, std::vector<double>& x,
                           const std::vector<double>& analytic, const std::function<double()>& loss,
                           double h = 1e-6, double tol = 1e-6, size_t max_checks = 96) {
  REQUIRE(x.size() == analytic.size());
  size_t non_finite = 0;
  for (double v : analytic) non_finite += !std::isfinite(v);
  INFO(name << ": " << non_finite << " non-finite analytic values");
  CHECK(non_finite == 0);
  CHECK(std::isfinite(loss()));
  size_t n = x.size();
  size_t stride = n <= max_checks ? 1 : (n + max_checks - 1) / max_checks;
  double worst = 0;
  bool nan_seen = false;  // NaN never compares greater, so it is tracked on its own
  size_t worst_i = 0;
  double worst_a = 0, worst_n = 0;
  for (size_t i = 0; i < n; i += stride) {
    double saved = x[i];
    x[i] = saved + h;
    double lp = loss();
    x[i] = saved - h;
    double lm = loss();
    x[i] = saved;
    double num = (lp - lm) / (2 * h);
    double err = std::fabs(num - analytic[i]) / std::max({1.0, std::fabs(num), std::fabs(analytic[i])});
    if (std::isnan(err)) {
      nan_seen = true;
      worst_i = i;
    } else if (err > worst) {
      worst = err;
      worst_i = i;
      worst_a = analytic[i];
      worst_n = num;
    }
  }
  INFO(name << ": worst relative error " << worst << " at index " << worst_i << " (analytic "
            << worst_a << ", numeric " << worst_n << ")");
  CHECK(!nan_seen);
  CHECK(worst <= tol);
}

// Sum of r[i] * y[i]: the scalar whose gradient w.r.t. y is r (the usual projection for checks).
template <class T>
double dot(const std::vector<T>& r, const std::vector<T>& y) {
  double s = 0;
  for (size_t i = 0; i < r.size(); ++i) s += static_cast<double>(r[i]) * static_cast<double>(y[i]);
  return s;
}

}  // namespace testing
