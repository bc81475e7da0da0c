// Global gradient norm over many tensors and the clipping factor derived from it.
#include "optim/clip.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace optim {
namespace {

template <class T>
double sum_squares(const T* __restrict x, int64_t n) {
  double s = 0;
  // Below this size a parallel region costs more than it saves; many parameters are small
  // (norm weights, biases).
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const double xi = static_cast<double>(x[i]);
    s += xi * xi;
  }
  return s;
}

}  // namespace

double global_norm(const std::vector<core::Tensor>& grads) { return std::sqrt(sum_squares(grads)); }

double sum_squares(const std::vector<core::Tensor>& grads) {
  double total = 0;
  for (size_t k = 0; k < grads.size(); ++k) {
    const core::Tensor& g = grads[k];
    const int64_t n = g.numel();
    if (n == 0) continue;
    FLOT_CHECK(g.device == core::Device::cpu, "gradient {} is not in host memory", k);
    if (g.dtype == core::DType::f32)
      total += sum_squares(g.ptr<float>(), n);
    else if (g.dtype == core::DType::f64)
      total += sum_squares(g.ptr<double>(), n);
    else
      FLOT_CHECK(false, "gradient {} is {}, must be f32 or f64", k, core::dtype_name(g.dtype));
  }
  return total;
}

double clip_factor(double norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  // A NaN norm must stay visible: min(1, NaN) would quietly return 1 and let the step through.
  if (std::isnan(norm)) return std::numeric_limits<double>::quiet_NaN();
  FLOT_CHECK(norm >= 0, "gradient norm {} is negative", norm);
  return std::min(1.0, max_norm / (norm + 1e-6));
}

}  // namespace optim
