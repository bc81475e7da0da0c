// LinkModel: the emulated network link of one rank (parallel.link.bandwidth_gbps / latency_us).
//
// A message of b bytes completes no earlier than latency + 8b / bandwidth after it was posted,
// and the messages leaving one rank share its bandwidth: they are serialized on one outgoing link
// in posting order, so two messages posted together finish one after the other. The MPI
// communicator posts each outgoing message at the arrival time this model gives it, which delays
// the receiver exactly as a slower network would. Pure arithmetic, so it is tested on its own.
//
// parallel.link.traffic chooses which messages take the emulated link (by Traffic: all, or e.g.
// only the experts' all-to-all); the others leave at once, as over a separate, fast network.
// That sets the all-to-all against computation alone, the ratio DeepSeek-V3 quotes, without the
// data-parallel reduction of a tiny test batch weighing on the same link.
#pragma once

#include <cstdint>
#include <string>

#include "parallel/communicator.hpp"

namespace parallel {

class LinkModel {
 public:
  // Every Traffic class.
  static constexpr unsigned kAllTraffic = 0xF;
  // "all", or a comma-separated list of expert_a2a, pipeline, gradients, other -> a mask of
  // 1 << Traffic; core::ConfigError naming the text and the choices otherwise.
  static unsigned parse_traffic(const std::string& names);

  LinkModel() = default;
  LinkModel(double bandwidth_gbps, double latency_us, unsigned traffic = kAllTraffic);
  // Off when the bandwidth is 0 or the link is suspended: messages leave at once.
  bool enabled() const { return seconds_per_byte_ > 0 && !suspended_; }
  // Suspended, the link lets every message leave at once until resumed (`flotilla bench
  // --against-free-link` times steps with and without it in one run); resuming starts from an
  // empty queue.
  void set_suspended(bool suspended);
  // A new bandwidth (> 0) from now on, with the latency given at construction; the queue starts
  // empty. `flotilla bench --a2a-ratio` sets the link from the computation it measured.
  void set_bandwidth(double bandwidth_gbps);
  // The time (same clock as `now`, seconds) at which a message of `bytes` posted at `now` has
  // arrived, and the link is busy until it has left. extra_latency_steps adds that many further
  // latencies (collectives made of several dependent messages). Traffic the link does not carry
  // arrives at `now` and leaves the link's queue as it was.
  double arrival(double now, int64_t bytes, int extra_latency_steps = 0,
                 Traffic traffic = Traffic::other);

 private:
  double seconds_per_byte_ = 0, latency_s_ = 0;
  double free_at_ = 0;  // when the outgoing link has sent everything queued so far
  unsigned traffic_ = kAllTraffic;
  bool suspended_ = false;
};

}  // namespace parallel
