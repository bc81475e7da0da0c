// Engine: the communication thread of an MPI process and the operations it progresses.
//
// Every MPI request of every communicator of the process is posted and tested by this one
// thread, so messages move while the compute thread works (CPU MPI progresses only inside MPI
// calls). The thread sleeps on a condition variable while nothing is pending, and polls with a
// short, growing back-off while requests are in flight, so an idle rank does not steal a core
// from compute. The emulated link (LinkModel) is applied by posting each outgoing message at its
// arrival time. Waits time out after runtime.comm_timeout_s and end the job with the rank, group
// and operation in the message.
//
// The thread can run in the real-time class (runtime.comm_thread_priority; by default while it
// emulates a link where the compute threads outnumber the cores, launch::comm_thread_class). It
// plays the network card: a message it posts late, or a completion it sees late, delays the
// compute that waits for it. In the normal class a woken thread may wait for a busy core until
// the scheduler preempts the compute running there, milliseconds on a machine whose ranks share
// cores, at every timed post and every test; in the real-time class it preempts at once. It
// sleeps between tests (the back-off above), so it takes the cores only for the microseconds of
// each test, post or copy; but without an emulated link, where nothing waits for a timed post,
// those preemptions cost more than they bring.
#pragma once

#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parallel/communicator.hpp"
#include "parallel/link_model.hpp"

namespace parallel::mpi {

// Seconds on the steady clock (the time base of the link model and the statistics).
double now_s();

// An operation the communication thread progresses until it completes.
class Op {
 public:
  virtual ~Op() = default;
  // On the communication thread: post what is due, test what is posted; true once complete.
  // Lowers *wake to the time of the next timed post; sets *polling while MPI requests are
  // pending (they progress only when tested); sets *moved when it posted a message or one of its
  // requests completed (a handshake is under way: the peer answers within microseconds).
  virtual bool progress(double now, double* wake, bool* polling, bool* moved) = 0;
  std::string what;   // "all_to_all_v of 1.5 MiB on ep (2 ranks, rank 0 of it)", for timeouts
  std::string label;  // "all_to_all_v on ep, 1.5 MiB", for traces
  Traffic traffic = Traffic::other;
  double submitted = 0;
  std::atomic<bool> complete{false};
};

// MPI requests, each posted at its time (receives at once, sends at their emulated arrival).
class RequestOp : public Op {
 public:
  using PostFn = std::function<void(std::vector<MPI_Request>&)>;
  void add(double at, PostFn fn);
  bool progress(double now, double* wake, bool* polling, bool* moved) override;

 private:
  struct Post {
    double at;
    PostFn fn;
  };
  std::vector<Post> posts_;  // in time order
  size_t next_ = 0;
  std::vector<MPI_Request> reqs_;
  std::vector<int> done_;  // MPI_Testsome's indices
};

class Engine {
 public:
  // The real-time class is SCHED_FIFO at priority 1, if the process may use it (root,
  // CAP_SYS_NICE or RLIMIT_RTPRIO >= 1); realtime() says whether the thread runs in it now.
  Engine(int world_rank, double timeout_s, LinkModel link, CommThreadClass cls = CommThreadClass::normal);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Hands an operation to the communication thread (callable from any thread, the
  // communication thread included) and returns its handle.
  HandlePtr submit(std::shared_ptr<Op> op);
  // Blocks until op completes; after the timeout, ends the job naming the operation.
  void wait(Op& op);
  // The emulated arrival time of a message of `bytes` leaving now (see LinkModel).
  double arrival(int64_t bytes, int extra_latency_steps, Traffic traffic);
  bool link_enabled() const { return link_.enabled(); }
  void set_link_suspended(bool suspended);
  void set_link_bandwidth(double bandwidth_gbps);
  void count_bytes(Traffic t, int64_t bytes);
  // One point-to-point exchange: the larger of its bytes out and in (CommStats::exchange_bytes).
  void count_exchange(Traffic t, int64_t larger_side_bytes);
  CommStats stats() const;
  int world_rank() const { return world_rank_; }
  bool realtime() const;
  // Whether the real-time class was asked for and refused (the process lacks the privilege).
  bool realtime_refused() const;
  void set_recording(bool on);
  std::vector<CommRecord> take_records();

 private:
  void loop();
  void finish(Op& op, double now);
  const int world_rank_;
  const double timeout_s_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::shared_ptr<Op>> incoming_;
  bool stop_ = false;
  LinkModel link_;       // guarded by mu_
  CommStats stats_;      // guarded by mu_
  bool recording_ = false;
  std::vector<CommRecord> records_;  // guarded by mu_
  int pending_ = 0;      // submitted, not yet complete
  double busy_since_ = 0;
  int traffic_pending_[4] = {0, 0, 0, 0};
  double traffic_since_[4] = {0, 0, 0, 0};
  std::thread thread_;
  clockid_t progress_clock_{};  // thread_'s CPU-time clock (CommStats::progress_cpu_s)
  bool has_progress_clock_ = false;
  void apply_class();  // with mu_ held: the class cls_ asks for with the link as it is now
  const CommThreadClass cls_;
  bool realtime_ = false, refused_ = false;  // guarded by mu_
};

}  // namespace parallel::mpi
