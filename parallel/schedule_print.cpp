// Printing schedules in the notation of docs/pipeline.md and counting what they keep in flight.
#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"
#include "parallel/schedule.hpp"

namespace parallel {

std::string action_label(const Action& a) {
  switch (a.kind) {
    case ActionKind::forward:
      return fmt::format("F{}.{}", a.chunk, a.micro);
    case ActionKind::backward:
      return fmt::format("{}{}.{}", a.zero_bubble ? 'I' : 'B', a.chunk, a.micro);
    case ActionKind::weight:
      return fmt::format("W{}.{}", a.chunk, a.micro);
    case ActionKind::forward_backward:
      return fmt::format("(F{}.{}&{}{}.{})", a.chunk, a.micro, a.zero_bubble ? 'I' : 'B', a.chunk_b,
                         a.micro_b);
    case ActionKind::forward_pair:
      return fmt::format("(F{}.{}&F{}.{})", a.chunk, a.micro, a.chunk_b, a.micro_b);
    case ActionKind::backward_pair: {
      const char b = a.zero_bubble ? 'I' : 'B';
      return fmt::format("({}{}.{}&{}{}.{})", b, a.chunk, a.micro, b, a.chunk_b, a.micro_b);
    }
    case ActionKind::recv_forward:
      return fmt::format("recv_forward({}.{})", a.chunk, a.micro);
    case ActionKind::recv_backward:
      return fmt::format("recv_backward({}.{})", a.chunk, a.micro);
    case ActionKind::send_forward:
      return fmt::format("send_forward({}.{})", a.chunk, a.micro);
    case ActionKind::send_backward:
      return fmt::format("send_backward({}.{})", a.chunk, a.micro);
    case ActionKind::commit:
      return "commit";
  }
  return "?";
}

std::string format_schedule(const Schedule& s, bool with_comm) {
  std::string line = fmt::format("r{}:", s.rank);
  for (const Action& a : s.actions) {
    if (!with_comm && !a.is_compute()) continue;
    line += ' ';
    line += action_label(a);
  }
  return line;
}

InFlightPeaks in_flight_peaks(const Schedule& s) {
  InFlightPeaks peaks;
  const size_t n = s.places.size();
  peaks.slots.assign(n, 0);
  int activations = 0;
  std::vector<int> slots(n, 0);
  auto forward = [&](int c) {
    peaks.activations = std::max(peaks.activations, ++activations);
    peaks.slots[c] = std::max(peaks.slots[c], ++slots[c]);
  };
  for (const Action& a : s.actions) {
    switch (a.kind) {
      case ActionKind::forward:
        forward(a.chunk);
        break;
      case ActionKind::backward:
        --activations;
        if (!a.zero_bubble) --slots[a.chunk];
        break;
      case ActionKind::weight:
        --slots[a.chunk];
        break;
      case ActionKind::forward_backward:
        forward(a.chunk);  // both live while the pair runs
        --activations;
        if (!a.zero_bubble) --slots[a.chunk_b];
        break;
      case ActionKind::forward_pair:
        forward(a.chunk);
        forward(a.chunk_b);
        break;
      case ActionKind::backward_pair:
        activations -= 2;
        if (!a.zero_bubble) {
          --slots[a.chunk];
          --slots[a.chunk_b];
        }
        break;
      default:
        break;
    }
  }
  return peaks;
}

int max_in_flight_slots(const Schedule& s, int chunk) {
  FLOT_CHECK(chunk >= 0 && chunk < static_cast<int>(s.places.size()),
             "chunk {} of a schedule with {} chunks", chunk, s.places.size());
  return in_flight_peaks(s).slots[chunk];
}

}  // namespace parallel
