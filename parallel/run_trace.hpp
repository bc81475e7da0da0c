// The Chrome trace of a real training step (Perfetto, chrome://tracing): one process per rank
// with its compute (each schedule action, and inside an overlapped pair each piece), the time
// it waited for communication, and every communication operation while it was in flight.
//
// Each rank records with its steady clock (the same clock for every process of a machine; on
// several machines the ranks' traces are aligned at the step's start); rank 0 gathers the
// events and writes one file.
#pragma once

#include <string>
#include <vector>

#include "parallel/communicator.hpp"

namespace parallel {

enum class TraceLane : uint8_t { compute, wait, comm };

// One timed interval. Times in seconds on the steady clock.
struct TraceEvent {
  std::string name;  // "F0.3", "(F0.3&B1.1)", "F0.3 piece 1", "all_to_all_v on ep 1.5 MiB", ...
  std::string cat;   // "forward", "backward", "weight", "pair", "wait", "expert_a2a", ...
  double start = 0, end = 0;
  TraceLane lane = TraceLane::compute;
};

// Gathers every rank's events (collective over `world`) and, on rank 0, writes the trace JSON
// to `path`; `step_start` is this rank's start of the traced step (time zero of the trace).
// Throws core::DataError on rank 0 when the file cannot be written.
void write_job_trace(Communicator& world, const std::vector<TraceEvent>& events, double step_start,
                     const std::string& path);
// The trace JSON of already gathered events: events[r] are rank r's, times relative to zero.
std::string chrome_trace_json(const std::vector<std::vector<TraceEvent>>& events);

const char* traffic_name(Traffic t);

}  // namespace parallel
