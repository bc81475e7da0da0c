// Learning rate per optimizer step: linear warmup followed by a cosine, wsd or constant phase.
#include "optim/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace optim {
namespace {

constexpr double kPi = 3.14159265358979323846;

int64_t wsd_decay_steps(const LrSchedule& s) {
  return std::llround(s.decay_fraction * static_cast<double>(s.total_steps));
}

// The schedule is validated on every call (it is a handful of comparisons) because lr_at is the
// only entry point; a bad schedule then fails at step 0, before any communication.
void validate(const LrSchedule& s) {
  if (s.kind != "cosine" && s.kind != "wsd" && s.kind != "constant")
    FLOT_THROW(core::ConfigError, "optim.schedule '{}' is not one of cosine, wsd, constant", s.kind);
  if (s.total_steps < 1)
    FLOT_THROW(core::ConfigError, "the run has {} steps; the LR schedule needs at least 1",
               s.total_steps);
  // A warmup longer than the run is a short test run (--set train.steps=5): it is cut short.
  if (s.warmup_steps < 0)
    FLOT_THROW(core::ConfigError, "optim.warmup_steps = {} must be at least 0", s.warmup_steps);
  if (!(s.decay_fraction >= 0 && s.decay_fraction <= 1))
    FLOT_THROW(core::ConfigError, "optim.decay_fraction = {} must lie in [0, 1]",
               s.decay_fraction);
  if (s.kind == "wsd" && s.warmup_steps < s.total_steps) {
    const int64_t decay_steps = wsd_decay_steps(s);
    if (decay_steps > 0 && s.total_steps - decay_steps < s.warmup_steps)
      FLOT_THROW(core::ConfigError,
                 "wsd decay starts at step {} (decay_fraction {}) inside the {} warmup steps",
                 s.total_steps - decay_steps, s.decay_fraction, s.warmup_steps);
  }
}

}  // namespace

double lr_at(const LrSchedule& s, int64_t step) {
  validate(s);
  FLOT_CHECK(step >= 0, "learning rate asked for step {}", step);
  if (step < s.warmup_steps)
    return s.lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  if (s.kind == "constant") return s.lr;

  // Past total_steps every schedule holds the value it reached at total_steps.
  const int64_t t = std::min(step, s.total_steps);
  if (s.kind == "cosine") {
    const int64_t span = s.total_steps - s.warmup_steps;
    // A warmup that fills the whole run leaves no cosine phase: the run is over, hold min_lr.
    const double p = span > 0 ? static_cast<double>(t - s.warmup_steps) / static_cast<double>(span)
                              : 1.0;
    return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + std::cos(kPi * p));
  }

  // wsd
  const int64_t decay_steps = wsd_decay_steps(s);
  const int64_t decay_start = s.total_steps - decay_steps;
  // decay_fraction 0 puts decay_start at total_steps, which t never passes: no decay phase.
  if (t <= decay_start) return s.lr;
  const double q = static_cast<double>(t - decay_start) / static_cast<double>(decay_steps);
  return s.lr + (s.min_lr - s.lr) * q;
}

}  // namespace optim
