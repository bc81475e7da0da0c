// The emulated link: one outgoing queue per rank with a fixed bandwidth and latency.
#include "parallel/link_model.hpp"

#include <cmath>

#include <algorithm>
#include <sstream>

#include "core/error.hpp"

namespace parallel {

unsigned LinkModel::parse_traffic(const std::string& names) {
  static const char* kNames[] = {"other", "expert_a2a", "gradients", "pipeline"};  // Traffic order
  if (names == "all") return kAllTraffic;
  unsigned mask = 0;
  std::stringstream in(names);
  std::string name;
  while (std::getline(in, name, ',')) {
    bool known = false;
    for (unsigned t = 0; t < 4; ++t)
      if (name == kNames[t]) {
        mask |= 1u << t;
        known = true;
      }
    if (!known)
      FLOT_THROW(core::ConfigError,
                 "parallel.link.traffic = '{}': '{}' is no traffic class; use all, or a "
                 "comma-separated list of expert_a2a, pipeline, gradients, other",
                 names, name);
  }
  if (mask == 0)
    FLOT_THROW(core::ConfigError,
               "parallel.link.traffic = '{}' names no traffic; use all, or e.g. expert_a2a", names);
  return mask;
}

LinkModel::LinkModel(double bandwidth_gbps, double latency_us, unsigned traffic) : traffic_(traffic) {
  FLOT_CHECK(bandwidth_gbps >= 0 && latency_us >= 0, "link {} Gbit/s, {} us", bandwidth_gbps,
             latency_us);
  seconds_per_byte_ = bandwidth_gbps > 0 ? 8.0 / (bandwidth_gbps * 1e9) : 0.0;
  latency_s_ = latency_us * 1e-6;  // only while enabled(): a link without bandwidth adds none
}

void LinkModel::set_bandwidth(double bandwidth_gbps) {
  FLOT_CHECK(bandwidth_gbps > 0 && std::isfinite(bandwidth_gbps), "link bandwidth {} Gbit/s",
             bandwidth_gbps);
  seconds_per_byte_ = 8.0 / (bandwidth_gbps * 1e9);
  free_at_ = 0;
}

void LinkModel::set_suspended(bool suspended) {
  suspended_ = suspended;
  free_at_ = 0;
}

double LinkModel::arrival(double now, int64_t bytes, int extra_latency_steps, Traffic traffic) {
  if (!enabled() || !(traffic_ & (1u << static_cast<unsigned>(traffic)))) return now;
  const double start = std::max(now, free_at_);
  free_at_ = start + static_cast<double>(bytes) * seconds_per_byte_;
  return free_at_ + latency_s_ * (1 + extra_latency_steps);
}

}  // namespace parallel
