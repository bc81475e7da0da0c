// Communicator: the collective and point-to-point operations the trainer uses, each returning a
// handle to wait on, so that communication proceeds while the caller computes.
//
// Implementations: SingleProcess (a world of one; every operation completes at once) and MPI
// (parallel/mpi_communicator.cpp: a communication thread owns every MPI call, so messages move
// while the compute thread works, and an emulated link can delay them). The trainer always calls
// through this interface: a single process is the degenerate case of the parallel path.
//
// Ordering contract (as MPI's): the ranks of a communicator issue its collectives (all_reduce,
// all_gather, reduce_scatter, barrier) in the same order. all_to_all_v and point-to-point
// messages are matched by tag instead, so they may be issued in any order relative to each other;
// all_to_all_v draws its tags from reserve_tags() unless given one.
//
// Every wait has the communicator's timeout: when it expires the whole job ends (core::fatal)
// with a message naming the rank, the group and the operation, instead of hanging.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace parallel {

enum class ReduceOp { sum, max };

// The scheduling class of a process's communication thread (runtime.comm_thread_priority; see
// parallel/mpi_engine.hpp): normal, real-time (SCHED_FIFO), or real-time only while it emulates a
// link.
enum class CommThreadClass { normal, realtime, realtime_with_link };

// What an operation's bytes count as in the statistics.
enum class Traffic : uint8_t { other, expert_a2a, gradients, pipeline };

// A pending operation. wait() blocks until it completes (or ends the job after the
// communicator's timeout, naming the rank and the operation). Destroying a handle that was
// never waited on is allowed only once it is done (a handle in flight owns the operation).
class Handle {
 public:
  virtual ~Handle() = default;
  virtual void wait() = 0;
  virtual bool done() = 0;
};
using HandlePtr = std::unique_ptr<Handle>;

// Counters of one process, over every communicator it holds. Times in seconds.
struct CommStats {
  int64_t bytes_sent[4] = {0, 0, 0, 0};  // by Traffic, bytes leaving this rank (to other ranks)
  // By Traffic, over point-to-point exchanges (all_to_all_v, send_recv): the larger of the bytes
  // each sent and received, summed. An exchange is over when its larger side has arrived, so with
  // uneven routing this, not bytes_sent, paces the all-to-all on a link.
  int64_t exchange_bytes[4] = {0, 0, 0, 0};
  double in_flight_s = 0;                // wall time during which at least one operation was pending
  double traffic_in_flight_s[4] = {0, 0, 0, 0};  // the same for each Traffic on its own
  double wait_s[4] = {0, 0, 0, 0};       // by Traffic, time the calling thread was blocked in wait()
  // CPU seconds the communication thread has used (MPI progress, the link's pacing): what a
  // process's CPU time holds beyond its compute (StepMetrics::compute_cpu_s).
  double progress_cpu_s = 0;
  double total_wait_s() const { return wait_s[0] + wait_s[1] + wait_s[2] + wait_s[3]; }
};

// One recorded interval (Communicator::set_recording): an operation in flight from submission to
// completion, or the calling thread blocked in wait(). Seconds on the steady clock.
struct CommRecord {
  std::string what;  // "all_to_all_v on ep, 1.5 MiB out, 1.2 MiB in"
  Traffic traffic = Traffic::other;
  double start = 0, end = 0;
  bool wait = false;
};

// One message of a batched point-to-point exchange.
struct Message {
  core::Tensor buf;  // sent from / received into (whole tensor)
  int peer = 0;      // rank in this communicator
  int tag = 0;       // messages of one (peer, tag) pair are matched in order
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The group's name in messages ("world", "dp", "ep", ...).
  virtual const std::string& name() const = 0;

  // In place over buf, element-wise across ranks.
  virtual HandlePtr all_reduce(const core::Tensor& buf, ReduceOp op,
                               Traffic traffic = Traffic::other) = 0;
  // out [size * n] gathers every rank's in [n] in rank order. `in` may be this rank's own block
  // of `out` (in place).
  virtual HandlePtr all_gather(const core::Tensor& in, const core::Tensor& out,
                               Traffic traffic = Traffic::other) = 0;
  // out [n] = this rank's block of the element-wise sum of every rank's in [size * n].
  virtual HandlePtr reduce_scatter(const core::Tensor& in, const core::Tensor& out,
                                   Traffic traffic = Traffic::other) = 0;
  // Variable blocks: out [counts[rank]] = this rank's block of the element-wise sum of every
  // rank's in [sum of counts]; blocks follow each other in rank order and may be empty.
  virtual HandlePtr reduce_scatter_v(const core::Tensor& in, const core::Tensor& out,
                                     const std::vector<int64_t>& counts,
                                     Traffic traffic = Traffic::other) = 0;
  // Variable all-to-all over rows: send_counts[r] rows of `in` go to rank r (in rank order);
  // recv_counts[r] rows arrive from rank r into `out`. Empty segments are fine. tag < 0 takes
  // the next reserved tag.
  virtual HandlePtr all_to_all_v(const core::Tensor& in, const std::vector<int64_t>& send_counts,
                                 const core::Tensor& out, const std::vector<int64_t>& recv_counts,
                                 Traffic traffic = Traffic::other, int tag = -1) = 0;
  // Posts every send and receive of the batch together; one handle for all of them.
  virtual HandlePtr send_recv(const std::vector<Message>& sends, const std::vector<Message>& recvs,
                              Traffic traffic = Traffic::pipeline) = 0;
  // Runs `next` once `first` has completed, on the thread that progresses communication, and
  // completes when the handle `next` returns completes. This chains a second exchange whose
  // sizes come from the first (expert dispatch: counts, then rows) without the caller's help.
  // `next` must only issue tagged operations (all_to_all_v with an explicit tag, send_recv).
  virtual HandlePtr then(HandlePtr first, std::function<HandlePtr()> next,
                         Traffic traffic = Traffic::other) = 0;
  // n consecutive tags, the same on every rank that calls in the same order (for then()).
  virtual int reserve_tags(int n) = 0;

  virtual void barrier() = 0;
  // Ends the whole job (every rank) with this message.
  [[noreturn]] virtual void abort(const std::string& message) = 0;

  // A sub-communicator of the ranks that pass the same color, ordered by key (MPI_Comm_split
  // semantics). Collective over this communicator.
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) = 0;
  // This process's counters (shared by every communicator of the process).
  virtual CommStats stats() const = 0;
  // Recording for traces, process-wide like the counters: while on, every operation's time in
  // flight and every wait are kept until taken.
  virtual void set_recording(bool on) { (void)on; }
  // Suspends or resumes the emulated link (parallel.link) of this rank, for every communicator
  // split from the same world; no-op without one. Call it on every rank between steps.
  virtual void set_link_suspended(bool suspended) { (void)suspended; }
  // Sets the emulated link's bandwidth (> 0) of this rank from now on, for every communicator
  // split from the same world; no-op in one process. Call it on every rank between steps.
  virtual void set_link_bandwidth(double bandwidth_gbps) { (void)bandwidth_gbps; }
  virtual std::vector<CommRecord> take_records() { return {}; }
};

// The world of one process.
std::unique_ptr<Communicator> make_single_process_communicator(const std::string& name = "world");

// Checks the arguments of all_to_all_v against the group size and the tensors; shared by the
// implementations.
void check_all_to_all_v(const Communicator& c, const core::Tensor& in,
                        const std::vector<int64_t>& send_counts, const core::Tensor& out,
                        const std::vector<int64_t>& recv_counts);

}  // namespace parallel
