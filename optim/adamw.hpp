// AdamW with decoupled weight decay over flat parameter / gradient / moment buffers.
//
// Parameters and gradients are the master copies (f32 in training, f64 in gradient tests); the
// moments are the same dtype or bf16 (optim.moment_dtype), rounded to nearest even on store.
#pragma once

#include <cstdint>

#include "core/tensor.hpp"

namespace optim {

struct AdamWHyper {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// One step (step counts from 1 for bias correction):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * ( (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps) + wd * p )   (wd only if decay)
// grad_scale multiplies g first (gradient clipping and averaging folded in).
void adamw_step(const core::Tensor& param, const core::Tensor& grad, const core::Tensor& m,
                const core::Tensor& v, const AdamWHyper& h, int64_t step, double lr,
                double grad_scale, bool decay);

}  // namespace optim
