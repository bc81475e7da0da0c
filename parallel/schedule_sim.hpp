// A discrete-event simulator of a whole pipeline: every rank's action list (schedule.hpp) run
// against the others with the executor's commit-and-wait semantics, on a cost model.
//
// Semantics: recv/send actions queue; a commit posts the queued ops at the rank's current time
// and waits until each is matched and delivered. Messages from rank a to rank b match in posting
// order (as NCCL matches point-to-point operations), and each carries a tag (activation or
// gradient, destination stage, micro) that must equal the receive's. A message matched at
// max(send posted, receive posted) is delivered p2p seconds later; the commit ends when its last
// op is delivered. Compute actions take their cost and check that their inputs have arrived.
// Nothing hangs: when no rank can move, the result carries a deadlock report naming every
// waiting rank and what it waits on.
//
// Idle time of a rank = makespan - busy, where the makespan is the end of the last rank (every
// rank starts at 0): the time the device does not compute during the step, before, between and
// after its ops. With F=1, B=2, I=W=1, FB=3 and free messages this is exactly
// (PP/2-1)(F&B+B-3W) on every DualPipe/DualPipeV rank (PP = stages) and (PP-1)(F+B) for 1F1B
// (tests/parallel/test_schedule_sim.cpp).
#pragma once

#include <string>
#include <vector>

#include "parallel/schedule.hpp"

namespace parallel {

// Seconds per compute op and per message. I is the input-only backward, W the deferred weight
// pass, FB an overlapped forward/backward pair (two overlapped forwards cost 2F, two backwards
// 2B).
struct CostModel {
  double F = 1, B = 2, I = 1, W = 1, FB = 3;
  double p2p = 0;  // seconds per message, 0 = free
  // The expert all-to-all a forward or input pass waits for when it runs alone, per unit of its
  // compute (0: none, a free link; 1: DeepSeek-V3's 1:1, a lone pass waits as long as it
  // computes). Inside a pair the other half's compute hides it; a weight pass exchanges nothing.
  double A = 0;
  // 1: what the executor does with overlap on: while a lone pass waits for its exchange (the A
  // part of its cost) or a commit waits for its messages, the oldest deferred weight work runs,
  // and a weight action later costs only what is left of its pass. 0: waits stay idle.
  double fill = 0;
  double of(const Action& a) const;
};
// "F=1,B=2,W=1,FB=3" (keys F, B, I, W, FB, p2p, A, fill; any subset; I defaults to W's value). Bad syntax
// or an unknown key throws core::ConfigError naming the text.
CostModel parse_cost_model(const std::string& text);

struct SimEvent {
  int rank = 0;
  std::string label;  // "F0.3", "(F0.3&B1.1)", ... or "wait" for time blocked in a commit
  double start = 0, end = 0;
  bool wait = false;
};

struct SimRank {
  double busy = 0;              // sum of compute costs (and, with fill, weight work in waits)
  double idle = 0;              // makespan - busy
  double wait = 0;              // time blocked in commits with nothing to run (part of idle)
  double end = 0;               // when this rank's last action finished
  int peak_activations = 0;     // see InFlightPeaks (schedule.hpp)
  std::vector<int> peak_slots;  // per local chunk
  int messages_sent = 0;
};

struct SimResult {
  std::vector<SimRank> ranks;
  std::vector<SimEvent> events;  // compute ops and waits, per rank in time order
  double makespan = 0;
  std::string deadlock;             // empty unless the ranks stopped waiting on each other
  std::vector<std::string> errors;  // broken invariants: tag mismatch, missing input, leftovers
  bool ok() const { return deadlock.empty() && errors.empty(); }
  std::string report() const;  // deadlock and errors, one per line
};

// ranks[r] must be rank r's schedule; all of one kind, pp and chunks (else InternalError).
SimResult simulate(const std::vector<Schedule>& ranks, const CostModel& cost);

// Chrome trace-event JSON (Perfetto, chrome://tracing): one row per rank, compute ops and waits
// as complete events, times in microseconds of the simulated seconds.
std::string chrome_trace(const SimResult& result);

}  // namespace parallel
