// Pipeline schedules as data: a pure function (kind, pp, chunks, rank) -> this rank's ordered list
// of compute and communication actions. The executor runs the list; the simulator
// (schedule_sim.hpp) runs every rank's list against the others; tests check both.
//
// Invariants of every list make_schedule returns:
// - Each (chunk, micro) has exactly one forward and one backward (a B, an I, or the B half of a
//   forward_backward pair, or one half of a forward_pair / backward_pair); forwards and
//   backwards of a chunk run in micro order 0, 1, 2, ...
// - Every zero-bubble backward (I) has exactly one later `weight` action; weights run in the
//   order of their I's (FIFO), and each weight action names the (chunk, micro) it pops.
// - Communication mirrors DeepSeek's reference DualPipe/DualPipeV exactly: recv/send actions are
//   queued, and a `commit` posts everything queued as one batch and waits for all of it, so a
//   send queued after a compute travels in the next commit's batch.
// - Only real messages are listed: a recv/send the reference skips because the chunk has no peer
//   on that side (first/last stage, or DualPipeV's local turn on the last rank) is omitted, and so
//   is a commit with nothing queued (the reference returns at once). Hence every recv/send action
//   is one message to/from the peer in the chunk's ChunkPlace, and every commit posts >= 1 op.
// - For recv/send actions `micro` is the micro-batch the message carries (the chunk's next one
//   in that direction; messages of a chunk and kind travel in micro order).
// - No compute action starts while recv/send actions are queued (a commit always comes first).
// - Between two ranks, the i-th message one posts is the i-th the other expects, over all
//   chunks and kinds together, so one tag per neighbour suffices (the simulator checks this).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace parallel {

enum class ScheduleKind { sequential, one_f_one_b, dualpipe, dualpipev };

// "sequential", "1f1b", "dualpipe", "dualpipev"; core::ConfigError listing the names otherwise.
ScheduleKind schedule_kind_from_name(const std::string& name);
const char* schedule_kind_name(ScheduleKind k);

// Where one of this rank's chunks sits in the pipeline.
struct ChunkPlace {
  int stage = 0;           // model stage this chunk computes, 0 .. num_stages-1
  int prev_rank = -1;      // rank sending this chunk its forward input; -1 = none
  int next_rank = -1;      // rank receiving its forward output; -1 = none
  bool local_in = false;   // DualPipeV last rank, chunk 1: input = this rank's chunk-0 output
  bool local_out = false;  // DualPipeV last rank, chunk 0: output goes to this rank's chunk 1
  bool first_stage() const { return stage == 0; }
  bool last_stage(int num_stages) const { return stage == num_stages - 1; }  // loss computed here
};

// The order matters to Action::is_comm / is_compute: messages, then commit, then compute.
enum class ActionKind : uint8_t {
  recv_forward,     // queue a receive of the next forward input of `chunk` from prev_rank
  recv_backward,    // queue a receive of the next output gradient of `chunk` from next_rank
  send_forward,     // queue a send of the oldest not-yet-sent forward output of `chunk`
  send_backward,    // queue a send of the oldest not-yet-sent input gradient of `chunk`
  commit,           // post every queued send and receive as one batch and wait for all of them
  forward,          // compute: forward of (chunk, micro)
  backward,         // compute: backward of (chunk, micro); zero_bubble -> input gradient only
                    // (printed I), its weight pass is queued (FIFO)
  weight,           // compute: the deferred weight pass popped from the FIFO = (chunk, micro)
  forward_backward,  // compute: forward of (chunk, micro) and full backward of (chunk_b, micro_b)
  forward_pair,      // compute: forwards of (chunk, micro) and (chunk_b, micro_b), overlapped
  backward_pair      // compute: full backwards of (chunk, micro) and (chunk_b, micro_b), overlapped
};

struct Action {
  ActionKind kind = ActionKind::commit;
  int chunk = 0, micro = 0;
  int chunk_b = 0, micro_b = 0;  // the second half of a pair (forward_backward, *_pair)
  bool zero_bubble = false;      // backward, and the backward halves of pairs: input pass only
  bool is_compute() const { return kind >= ActionKind::forward; }
  bool is_pair() const { return kind >= ActionKind::forward_backward; }
  bool is_comm() const { return kind <= ActionKind::send_backward; }
};

struct Schedule {
  ScheduleKind kind = ScheduleKind::sequential;
  int pp = 1, chunks = 0, rank = 0;
  bool ep_overlap = false;         // see make_schedule
  int num_stages = 1;              // pp, or 2*pp for dualpipev
  std::vector<ChunkPlace> places;  // by local chunk id: 1 (sequential, 1f1b) or 2 (dualpipe, v)
  std::vector<Action> actions;     // execution order, communication included
  int micro_per_chunk() const;     // chunks/2 for dualpipe, chunks otherwise
};

// The pure function. Preconditions (pp >= 1, chunks >= 1, rank in [0, pp); sequential: pp == 1;
// 1f1b: chunks >= pp; dualpipe: pp even, chunks even, chunks >= 2*pp; dualpipev: chunks >= 2*pp)
// throw core::ConfigError whose message prints the offending values.
//
// Chunk ids: dualpipe chunk d = direction d (rank r: chunk 0 = stage r, chunk 1 = stage pp-1-r);
// dualpipev chunk 0 = stage r, chunk 1 = stage 2*pp-1-r; sequential and 1f1b: chunk 0 = stage r.
// Micro ids count per chunk from 0 to micro_per_chunk()-1.
//
// ep_overlap: the form the trainer runs when expert parallelism overlaps its all-to-all with
// another micro-batch's compute (1f1b ignores it). Each pair's backward is an input pass whose
// weight pass is deferred by one pair, so that the next pair has weight work to run while it
// waits for an exchange, at the price of one more micro-batch slot per chunk.
// - sequential: the first two forwards and the last two backwards run as pairs too,
//   `(F0.0&F0.1) (F0.2&I0.0) (F0.3&I0.1) W0.0 (I0.2&I0.3) W0.1 W0.2 W0.3`, so that no
//   micro-batch's all-to-all is left without another micro-batch's compute to hide behind (two
//   more micro-batches' activations in flight).
// - dualpipe, dualpipev: the pairs of phases 4 and 5 (and phase 5's lone backwards) defer their
//   weight passes, each W placed after the next compute's commit. Phase 6's backwards are all
//   input passes (the reference runs the first half full, after the weight passes still
//   deferred), and every weight pass still deferred runs after them: the executor fills the
//   lone drain passes' exchange waits with that weight work, and their input gradients leave
//   sooner. The turning ranks (V's last, DualPipe's two middle ones) pair their warm-up
//   forwards across micro-batches, `F0.0 (F1.0&F0.1) (F1.1&F0.2) B1.0`; every channel carries
//   the reference's messages in the reference's order.
Schedule make_schedule(ScheduleKind kind, int pp, int chunks, int rank, bool ep_overlap = false);
// make_schedule for every rank 0 .. pp-1.
std::vector<Schedule> make_schedules(ScheduleKind kind, int pp, int chunks, bool ep_overlap = false);

// The compute ops only, in the notation of docs/pipeline.md: `r0: F0.0 I1.0 W1.0 (F0.3&B1.1)`
// (and `(F0.2&I0.0)`, `(F0.0&F0.1)`, `(I0.2&I0.3)`, `(F1.0&F0.1)` for the pairs of ep_overlap);
// with_comm adds the communication actions in their places (`recv_forward(0.1) commit F0.1`).
std::string format_schedule(const Schedule& s, bool with_comm = false);
// One action as printed: "F0.3", "B1.1", "I0.2", "W0.2", "(F0.3&B1.1)", "(F0.3&I0.1)", "(F0.0&F0.1)",
// "(I0.2&I0.3)", and for communication
// "recv_forward(0.3)", "send_backward(1.2)" (chunk.micro of the message), "commit".
std::string action_label(const Action& a);

// Peaks over the list: activations = chunk forwards whose B or I has not run yet (the forward
// of a pair counts before its backward frees); slots[chunk] = forwards of that chunk whose weight
// pass (W, or a full B) has not run yet, which is what the executor must allocate.
struct InFlightPeaks {
  int activations = 0;
  std::vector<int> slots;  // per local chunk
};
InFlightPeaks in_flight_peaks(const Schedule& s);
int max_in_flight_slots(const Schedule& s, int chunk);

}  // namespace parallel
