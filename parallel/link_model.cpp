// The emulated link: one outgoing queue per rank with a fixed bandwidth and latency.
#include "parallel/link_model.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace parallel {

LinkModel::LinkModel(double bandwidth_gbps, double latency_us) {
  FLOT_CHECK(bandwidth_gbps >= 0 && latency_us >= 0, "link {} Gbit/s, {} us", bandwidth_gbps,
             latency_us);
  seconds_per_byte_ = bandwidth_gbps > 0 ? 8.0 / (bandwidth_gbps * 1e9) : 0.0;
  latency_s_ = bandwidth_gbps > 0 ? latency_us * 1e-6 : 0.0;
}

double LinkModel::arrival(double now, int64_t bytes, int extra_latency_steps) {
  if (!enabled()) return now;
  const double start = std::max(now, free_at_);
  free_at_ = start + static_cast<double>(bytes) * seconds_per_byte_;
  return free_at_ + latency_s_ * (1 + extra_latency_steps);
}

}  // namespace parallel
