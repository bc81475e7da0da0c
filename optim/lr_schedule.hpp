// Learning-rate schedules: linear warmup, then cosine, warmup-stable-decay (wsd) or constant.
#pragma once

#include <cstdint>
#include <string>

namespace optim {

struct LrSchedule {
  std::string kind = "cosine";  // cosine | wsd | constant
  double lr = 3e-3;             // peak
  double min_lr = 3e-4;         // end of cosine / wsd decay
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double decay_fraction = 0.2;  // wsd: the last share of the steps decays linearly to min_lr
};

// LR for optimizer step `step` (0-based). Warmup: lr * (step + 1) / warmup_steps.
// cosine: min_lr + (lr - min_lr) * 0.5 (1 + cos(pi * p)), p = (step - warmup) / (total - warmup).
// wsd: lr until the decay starts at total - round(decay_fraction * total), then linear to min_lr.
double lr_at(const LrSchedule& s, int64_t step);

}  // namespace optim
