// The auxiliary-loss-free balancing rule: an update of non-gradient state after each step.
#pragma once

#include <cstdint>

#include "core/tensor.hpp"

namespace optim {

// b_i += gamma * sign(mean_load - load_i), loads counted over the step's whole global batch.
// bias [E] (f32 or f64); loads has E entries. sign(0) = 0.
void update_expert_bias(const core::Tensor& bias, const int64_t* loads, int num_experts, double gamma);

// MaxVio = (max_i load_i - mean load) / mean load; 0 when there are no tokens.
double max_violation(const int64_t* loads, int num_experts);

}  // namespace optim
