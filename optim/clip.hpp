// Global gradient-norm clipping.
#pragma once

#include <vector>

#include "core/tensor.hpp"

namespace optim {

// Sum of squares of all tensors, accumulated in double.
double sum_squares(const std::vector<core::Tensor>& grads);
// sqrt of sum_squares.
double global_norm(const std::vector<core::Tensor>& grads);
// The factor to multiply gradients by: min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0.
double clip_factor(double norm, double max_norm);

}  // namespace optim
