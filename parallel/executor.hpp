// Executor: runs one rank's schedule (parallel/schedule.hpp) for one optimizer step over the
// stages this rank holds.
//
// It interprets the action list literally: receives and sends are queued and a commit posts them
// as one batch on the pipeline communicator and waits (DualPipe's rule), forwards and backwards
// run on the chunk's stage in an activation slot taken when the micro-batch first arrives and
// returned after its weight pass (and after every message that reads it has left), input-only
// backwards queue their weight pass in a FIFO that `weight` actions pop, and a pair (F&B or F&I,
// or the F&F / I&I of the sequential schedule's ends) interleaves the pieces of the two
// micro-batches (Stage pieces) so that each expert exchange travels while the other micro-batch
// computes (parallel.overlap; off: one half, then the other). With overlap, whenever compute
// would wait (a pass's next piece for its exchange, in a pair or alone, or a commit for the
// neighbours' messages), pieces of deferred weight passes run first (oldest first, each pass's
// pieces in order), so that queued W work fills what would otherwise be idle time. Every
// backward's weight pass is queued when the backward starts, and its pieces become available one
// by one as its input pass completes each layer (Stage::weight_pieces_ready); a full backward
// runs what is left of its own at its end, a zero-bubble one leaves it to its W. DualPipeV's turn on
// the last rank is a local copy between the two chunks.
//
// Per action it records start and end times (compute, and the time spent waiting for
// messages), for the Chrome trace and the bubble / exposed-communication figures.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "core/model.hpp"
#include "parallel/communicator.hpp"
#include "parallel/run_trace.hpp"
#include "parallel/schedule.hpp"

namespace parallel {

struct StepRun {
  core::MicroLosses losses;           // summed over the micro-batches this rank finished (last stages)
  double aux = 0;                     // balance losses of every stage of this rank, already scaled
  double compute_s = 0, wait_s = 0;   // time in compute actions, and waiting in commits
  double forward_s = 0, backward_s = 0;  // compute split (a pair counts in both, by pieces)
  int peak_activations = 0;           // chunk forwards in flight whose input pass has not run
  int filled_weight_pieces = 0;       // weight-pass pieces run in waits (exchanges, commits)
  int early_weight_pieces = 0;        // of those, pieces run before their input pass had ended
  int lone_weight_pieces = 0;         // of those, pieces run while a lone F, B or I waited
  int commit_weight_pieces = 0;       // of those, pieces run while a commit waited for messages
  double start = 0;                   // steady-clock time the step started
  std::vector<TraceEvent> trace;      // compute actions (pieces inside pairs) and commits
};

class Executor {
 public:
  // batch(global_micro) returns the micro-batch of this step with that index (this dp rank's).
  using BatchFn = std::function<const core::data::MicroBatch&(int global_micro)>;

  Executor(const Schedule& schedule, core::Model& model, Communicator& pp, bool overlap);
  // Activation slots each local chunk needs (to build the model with).
  static std::vector<int> slots_needed(const Schedule& schedule);
  // The global micro-batch index of (chunk, micro) in this step.
  int global_micro(int chunk, int micro) const;
  const Schedule& schedule() const { return sched_; }
  // Runs every action of the schedule; gradients accumulate into the model's ParamStore.
  StepRun run(const BatchFn& batch, const core::LossScales& scales, bool record_trace);

 private:
  struct ChunkState {
    core::Stage* stage = nullptr;
    std::vector<int> free_slots;
    std::vector<int> slot_of;          // per micro, -1 = none
    std::vector<core::Tensor> input;   // received (or turned) forward input, per micro
    std::vector<core::Tensor> dy;      // received output gradient, per micro
    std::vector<int> sends_left;       // per micro: messages reading its slot not yet delivered
    std::vector<int> sends_total;      // per micro: messages the schedule sends from its slot
    std::vector<bool> done;            // per micro: weight pass ran; the slot frees once sent
    int next_send_f = 0, next_send_b = 0;
  };
  int acquire(int chunk, int micro);
  void release_if_idle(int chunk, int micro);
  // Posts the queued messages as one batch and waits for them, running deferred weight pieces
  // meanwhile (with overlap); returns the seconds those took.
  double commit(StepRun& r, bool record);
  void forward(int chunk, int micro, const BatchFn& batch, const core::LossScales& scales, StepRun& r);
  // A forward, a backward or a pair of them (Action::is_pair), piece by piece.
  void run_compute(const Action& a, const BatchFn& batch, const core::LossScales& scales, StepRun& r,
                   bool record);
  void backward_begin(int chunk, int micro);
  void backward_end(int chunk, int micro, bool zero_bubble);
  // The weight pass of (chunk, micro) from its piece from_piece on; then the slot may go.
  void weight(int chunk, int micro, int from_piece = 0);
  // Runs the next piece of the oldest deferred weight pass; false if none is ready. Counts it
  // in the StepRun (and in *counter if given).
  bool fill_one(std::string* label, StepRun& r, int* counter);
  // With overlap: runs deferred weight pieces while waiting() holds and one is ready (traced,
  // counted in backward_s); returns the seconds they took.
  double fill_while(const std::function<bool()>& waiting, StepRun& r, bool record, int* counter);
  void finish_forward(int chunk, int micro, StepRun& r);
  int tag(bool forward, int receiving_stage) const { return 2 * receiving_stage + (forward ? 0 : 1); }

  Schedule sched_;
  core::Model& model_;
  Communicator& pp_;
  bool overlap_;
  std::vector<ChunkState> chunks_;
  std::vector<Message> q_sends_, q_recvs_;
  struct SentFrom {
    int chunk, micro;
  };
  std::vector<SentFrom> q_sent_from_;
  struct Deferred {
    int chunk, micro;
    int pieces_done = 0;      // weight pieces already run while a pair waited
    bool input_done = false;  // the input pass has finished (backward_end)
    // Pieces may run while the input pass is still under way. Not for a chunk's last
    // micro-batch: its pieces finish parameters' gradients, so they run after its input pass on
    // every rank and the gradient buckets start in the same order everywhere.
    bool early = false;
  };
  std::deque<Deferred> weight_fifo_;
  int in_flight_ = 0;
};

}  // namespace parallel
