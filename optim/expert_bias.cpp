// The auxiliary-loss-free expert-bias update and the MaxVio balance metric.
#include "optim/expert_bias.hpp"

#include <algorithm>

namespace optim {
namespace {

template <class T>
void apply(T* bias, const int64_t* loads, int num_experts, int64_t total, double gamma) {
  const T step = static_cast<T>(gamma);
  const int64_t e = num_experts;
  for (int i = 0; i < num_experts; ++i) {
    // sign(mean - load_i) compared as total vs load_i * E in integers: a floating mean such as
    // 10/3 would make "exactly average" depend on rounding.
    const int64_t diff = total - loads[i] * e;
    if (diff > 0)
      bias[i] += step;
    else if (diff < 0)
      bias[i] -= step;
  }
}

int64_t checked_total(const int64_t* loads, int num_experts) {
  FLOT_CHECK(num_experts >= 0, "{} experts", num_experts);
  FLOT_CHECK(num_experts == 0 || loads != nullptr, "no loads for {} experts", num_experts);
  int64_t total = 0;
  for (int i = 0; i < num_experts; ++i) {
    FLOT_CHECK(loads[i] >= 0, "expert {} has a negative load {}", i, loads[i]);
    total += loads[i];
  }
  return total;
}

}  // namespace

void update_expert_bias(const core::Tensor& bias, const int64_t* loads, int num_experts,
                        double gamma) {
  FLOT_CHECK(bias.numel() == num_experts, "expert bias has {} entries for {} experts",
             bias.numel(), num_experts);
  FLOT_CHECK(bias.device == core::Device::cpu, "expert bias is not in host memory");
  FLOT_CHECK(gamma >= 0, "bias update speed gamma = {} is negative", gamma);
  const int64_t total = checked_total(loads, num_experts);
  if (num_experts == 0) return;
  if (bias.dtype == core::DType::f32)
    apply(bias.ptr<float>(), loads, num_experts, total, gamma);
  else if (bias.dtype == core::DType::f64)
    apply(bias.ptr<double>(), loads, num_experts, total, gamma);
  else
    FLOT_CHECK(false, "expert bias is {}, must be f32 or f64", core::dtype_name(bias.dtype));
}

double max_violation(const int64_t* loads, int num_experts) {
  const int64_t total = checked_total(loads, num_experts);
  if (total == 0) return 0.0;
  const int64_t max_load = *std::max_element(loads, loads + num_experts);
  const double mean = static_cast<double>(total) / num_experts;
  return (static_cast<double>(max_load) - mean) / mean;
}

}  // namespace optim
