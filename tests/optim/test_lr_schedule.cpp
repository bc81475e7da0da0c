// Learning-rate schedules against values worked out by hand from the documented formulas.
#include <catch2/catch.hpp>

#include <cmath>

#include "core/error.hpp"
#include "optim/lr_schedule.hpp"

namespace {

optim::LrSchedule make(const char* kind, int64_t warmup, int64_t total) {
  optim::LrSchedule s;
  s.kind = kind;
  s.lr = 1e-3;
  s.min_lr = 1e-4;
  s.warmup_steps = warmup;
  s.total_steps = total;
  return s;
}

}  // namespace

TEST_CASE("lr warmup is linear from lr/warmup to lr", "[optim]") {
  for (const char* kind : {"cosine", "wsd", "constant"}) {
    INFO(kind);
    optim::LrSchedule s = make(kind, 10, 110);
    CHECK(optim::lr_at(s, 0) == Approx(1e-4).epsilon(1e-12));   // 1e-3 * 1/10
    CHECK(optim::lr_at(s, 4) == Approx(5e-4).epsilon(1e-12));   // 1e-3 * 5/10
    CHECK(optim::lr_at(s, 9) == Approx(1e-3).epsilon(1e-12));   // end of warmup: the peak
    CHECK(optim::lr_at(s, 10) == Approx(1e-3).epsilon(1e-12));  // first step after warmup
  }
}

TEST_CASE("lr cosine: peak, quarter, midpoint, end, and clamped beyond the end", "[optim]") {
  optim::LrSchedule s = make("cosine", 10, 110);  // cosine over steps 10..110, p = (step-10)/100
  CHECK(optim::lr_at(s, 10) == Approx(1e-3).epsilon(1e-12));
  // p = 1/4: 1e-4 + 9e-4 * 0.5 * (1 + cos(pi/4)) = 1e-4 + 4.5e-4 * 1.70710678...
  CHECK(optim::lr_at(s, 35) == Approx(1e-4 + 4.5e-4 * (1 + std::sqrt(0.5))).epsilon(1e-12));
  CHECK(optim::lr_at(s, 60) == Approx(5.5e-4).epsilon(1e-12));  // p = 1/2: the mean of lr and min
  CHECK(optim::lr_at(s, 110) == Approx(1e-4).epsilon(1e-12));   // p = 1: min_lr
  CHECK(optim::lr_at(s, 111) == Approx(1e-4).epsilon(1e-12));
  CHECK(optim::lr_at(s, 100000) == Approx(1e-4).epsilon(1e-12));
}

TEST_CASE("lr warmup_steps = 0 means no warmup", "[optim]") {
  optim::LrSchedule s = make("cosine", 0, 100);
  CHECK(optim::lr_at(s, 0) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 50) == Approx(5.5e-4).epsilon(1e-12));
  CHECK(optim::lr_at(make("constant", 0, 100), 0) == Approx(1e-3).epsilon(1e-12));
}

TEST_CASE("lr wsd: stable before the decay, linear inside it, min_lr at and after the end", "[optim]") {
  optim::LrSchedule s = make("wsd", 10, 100);  // decay_fraction 0.2: decay over steps 80..100
  CHECK(optim::lr_at(s, 50) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 79) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 80) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 85) == Approx(1e-3 - 9e-4 * 0.25).epsilon(1e-12));
  CHECK(optim::lr_at(s, 90) == Approx(5.5e-4).epsilon(1e-12));
  CHECK(optim::lr_at(s, 100) == Approx(1e-4).epsilon(1e-12));
  CHECK(optim::lr_at(s, 250) == Approx(1e-4).epsilon(1e-12));

  s.decay_fraction = 0.23;  // decay starts at 100 - round(23) = 77
  CHECK(optim::lr_at(s, 77) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 78) == Approx(1e-3 - 9e-4 / 23).epsilon(1e-12));

  s.decay_fraction = 0.236;  // 23.6 rounds to 24 decay steps: the decay starts at 76
  CHECK(optim::lr_at(s, 76) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 77) == Approx(1e-3 - 9e-4 / 24).epsilon(1e-12));

  s.decay_fraction = 0;  // no decay phase at all
  CHECK(optim::lr_at(s, 99) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 500) == Approx(1e-3).epsilon(1e-12));
}

TEST_CASE("lr constant holds the peak forever after warmup", "[optim]") {
  optim::LrSchedule s = make("constant", 4, 100);
  CHECK(optim::lr_at(s, 0) == Approx(2.5e-4).epsilon(1e-12));
  CHECK(optim::lr_at(s, 3) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 99) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(s, 1000) == Approx(1e-3).epsilon(1e-12));
}

TEST_CASE("lr schedule rejects impossible settings", "[optim]") {
  CHECK_THROWS_AS(optim::lr_at(make("linear", 0, 10), 0), core::ConfigError);
  CHECK_THROWS_AS(optim::lr_at(make("cosine", -1, 10), 0), core::ConfigError);
  CHECK_THROWS_AS(optim::lr_at(make("cosine", 0, 0), 0), core::ConfigError);
  optim::LrSchedule s = make("wsd", 50, 100);
  s.decay_fraction = 0.6;  // decay would start at step 40, inside the warmup
  CHECK_THROWS_AS(optim::lr_at(s, 0), core::ConfigError);
  s.decay_fraction = 1.5;
  CHECK_THROWS_AS(optim::lr_at(s, 0), core::ConfigError);
  // A warmup that fills the run is allowed; after it the run is over and cosine holds min_lr.
  CHECK(optim::lr_at(make("cosine", 10, 10), 9) == Approx(1e-3).epsilon(1e-12));
  CHECK(optim::lr_at(make("cosine", 10, 10), 10) == Approx(1e-4).epsilon(1e-12));
  CHECK_THROWS_AS(optim::lr_at(make("cosine", 10, 100), -1), core::InternalError);
}

TEST_CASE("a warmup longer than the run is cut short, not refused", "[optim]") {
  // train.steps = 5 with warmup_steps = 20: the five steps climb the first quarter of the ramp
  for (const char* kind : {"cosine", "wsd", "constant"}) {
    optim::LrSchedule s = make(kind, 20, 5);
    for (int step = 0; step < 5; ++step)
      CHECK(optim::lr_at(s, step) == Approx(1e-3 * (step + 1) / 20).epsilon(1e-12));
  }
}
