// The communication thread: a queue of operations, progressed by MPI_Testall with a back-off.
#include "parallel/mpi_engine.hpp"

#include <fmt/format.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "core/error.hpp"
#include "parallel/mpi_check.hpp"

namespace parallel::mpi {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void RequestOp::add(double at, PostFn fn) {
  auto it = std::upper_bound(posts_.begin() + next_, posts_.end(), at,
                             [](double t, const Post& p) { return t < p.at; });
  posts_.insert(it, Post{at, std::move(fn)});
}

bool RequestOp::progress(double now, double* wake, bool* polling, bool* moved) {
  while (next_ < posts_.size() && posts_[next_].at <= now) {
    posts_[next_++].fn(reqs_);
    *moved = true;
  }
  if (next_ < posts_.size()) *wake = std::min(*wake, posts_[next_].at);
  if (!reqs_.empty()) {
    // Testsome rather than Testall: a request that completes alone (a receive whose data has
    // come) means the rest of the exchange is under way, which the back-off must see.
    int count = 0;
    done_.resize(reqs_.size());
    FLOT_MPI(MPI_Testsome(static_cast<int>(reqs_.size()), reqs_.data(), &count, done_.data(),
                          MPI_STATUSES_IGNORE));
    if (count > 0) {
      *moved = true;
      reqs_.erase(std::remove(reqs_.begin(), reqs_.end(), MPI_REQUEST_NULL), reqs_.end());
    }
    if (!reqs_.empty()) {
      *polling = true;
      return false;
    }
  }
  return next_ == posts_.size();
}

namespace {

class OpHandle : public Handle {
 public:
  OpHandle(Engine& e, std::shared_ptr<Op> op) : engine_(e), op_(std::move(op)) {}
  ~OpHandle() override {
    // A handle dropped in flight would leave buffers in use by the communication thread.
    if (!op_->complete.load()) core::fatal("a communication handle was dropped before completion: " + op_->what);
  }
  void wait() override { engine_.wait(*op_); }
  bool done() override { return op_->complete.load(); }

 private:
  Engine& engine_;
  std::shared_ptr<Op> op_;
};

// The pause between two tests of pending requests: MPI on CPUs progresses only when tested, and
// a tighter loop would take a core from the compute thread of this or another rank. 20 us at
// first, then a twentieth of the time spent waiting so far, up to 1 ms: a quick exchange is seen
// at once, a long one (a slow link, a peer still computing) costs at most 5% more latency while
// waking this thread, and preempting a busy compute thread, a hundred times less often. The
// clock restarts whenever a message is posted or a request completes: a large message is a
// handshake of several steps between the two communication threads, each seen only at a test,
// and at 1 ms per step a message that waited long on the emulated link arrived 2-3 ms late.
double backoff_s(double polling_for_s) {
  return std::clamp(polling_for_s / 20, 20e-6, 1e-3);
}

}  // namespace

Engine::Engine(int world_rank, double timeout_s, LinkModel link, CommThreadClass cls)
    : world_rank_(world_rank), timeout_s_(timeout_s), link_(link), cls_(cls) {
  thread_ = std::thread([this] {
    // Sleeps of a few tens of microseconds must not be rounded up to the default 50 us slack.
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    loop();
  });
  {
    std::lock_guard<std::mutex> lk(mu_);
    apply_class();
  }
  has_progress_clock_ = pthread_getcpuclockid(thread_.native_handle(), &progress_clock_) == 0;
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

HandlePtr Engine::submit(std::shared_ptr<Op> op) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    op->submitted = now_s();
    if (pending_++ == 0) busy_since_ = op->submitted;
    const int t = static_cast<int>(op->traffic);
    if (traffic_pending_[t]++ == 0) traffic_since_[t] = op->submitted;
    incoming_.push_back(op);
  }
  work_cv_.notify_one();
  return std::make_unique<OpHandle>(*this, std::move(op));
}

double Engine::arrival(int64_t bytes, int extra_latency_steps, Traffic traffic) {
  std::lock_guard<std::mutex> lk(mu_);
  return link_.arrival(now_s(), bytes, extra_latency_steps, traffic);
}

void Engine::apply_class() {
  const bool want = cls_ == CommThreadClass::realtime ||
                    (cls_ == CommThreadClass::realtime_with_link && link_.enabled());
  if (want == realtime_ || (want && refused_)) return;
  // The lowest real-time priority: above every normal thread, below anything the system runs
  // in the real-time class. Refused without the privilege (EPERM): the thread stays normal.
  sched_param sp{};
  sp.sched_priority = want ? 1 : 0;
  const bool ok = pthread_setschedparam(thread_.native_handle(), want ? SCHED_FIFO : SCHED_OTHER, &sp) == 0;
  if (ok) realtime_ = want;
  if (want && !ok) refused_ = true;
}

bool Engine::realtime() const {
  std::lock_guard<std::mutex> lk(mu_);
  return realtime_;
}

bool Engine::realtime_refused() const {
  std::lock_guard<std::mutex> lk(mu_);
  return refused_;
}

void Engine::set_link_suspended(bool suspended) {
  std::lock_guard<std::mutex> lk(mu_);
  link_.set_suspended(suspended);
  apply_class();
}

void Engine::set_link_bandwidth(double bandwidth_gbps) {
  std::lock_guard<std::mutex> lk(mu_);
  link_.set_bandwidth(bandwidth_gbps);
  apply_class();
}

void Engine::count_exchange(Traffic t, int64_t larger_side_bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  stats_.exchange_bytes[static_cast<int>(t)] += larger_side_bytes;
}

void Engine::count_bytes(Traffic t, int64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  stats_.bytes_sent[static_cast<int>(t)] += bytes;
}

CommStats Engine::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  CommStats s = stats_;
  const double now = now_s();
  if (pending_ > 0) s.in_flight_s += now - busy_since_;
  for (int t = 0; t < 4; ++t)
    if (traffic_pending_[t] > 0) s.traffic_in_flight_s[t] += now - traffic_since_[t];
  timespec ts;
  if (has_progress_clock_ && clock_gettime(progress_clock_, &ts) == 0)
    s.progress_cpu_s = ts.tv_sec + ts.tv_nsec * 1e-9;
  return s;
}

void Engine::set_recording(bool on) {
  std::lock_guard<std::mutex> lk(mu_);
  recording_ = on;
}

std::vector<CommRecord> Engine::take_records() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<CommRecord> out;
  out.swap(records_);
  return out;
}

void Engine::wait(Op& op) {
  if (op.complete.load()) return;
  const double t0 = now_s();
  std::unique_lock<std::mutex> lk(mu_);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s_));
  bool ok = done_cv_.wait_until(lk, deadline, [&] { return op.complete.load(); });
  const double t1 = now_s();
  stats_.wait_s[static_cast<int>(op.traffic)] += t1 - t0;
  if (recording_) records_.push_back({op.label, op.traffic, t0, t1, true});
  if (!ok) {
    lk.unlock();
    core::fatal(fmt::format(
        "rank {}: no progress for {:g} s (runtime.comm_timeout_s) waiting for {}; a peer rank "
        "stopped responding or died. Ending the whole job.",
        world_rank_, timeout_s_, op.what));
  }
}

void Engine::finish(Op& op, double now) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    op.complete.store(true);
    if (--pending_ == 0) stats_.in_flight_s += now - busy_since_;
    const int t = static_cast<int>(op.traffic);
    if (--traffic_pending_[t] == 0) stats_.traffic_in_flight_s[t] += now - traffic_since_[t];
    if (recording_ && !op.label.empty()) records_.push_back({op.label, op.traffic, op.submitted, now, false});
  }
  done_cv_.notify_all();
}

void Engine::loop() {
  std::vector<std::shared_ptr<Op>> active;
  double polling_since = -1;  // since the last completion, while requests are pending
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (active.empty())
        work_cv_.wait(lk, [&] { return stop_ || !incoming_.empty(); });
      if (stop_) return;  // every handle has been waited on by then; nothing is left to progress
      for (auto& op : incoming_) active.push_back(std::move(op));
      incoming_.clear();
    }
    const double now = now_s();
    double wake = std::numeric_limits<double>::infinity();
    bool polling = false, finished = false, moved = false;
    for (size_t i = 0; i < active.size();) {
      bool complete = false;
      try {
        complete = active[i]->progress(now, &wake, &polling, &moved);
      } catch (const std::exception& e) {
        // A chained exchange's second step runs here; its errors must end the job, not the
        // process without a word.
        core::fatal(fmt::format("rank {}: communication thread: {} (in {})", world_rank_, e.what(),
                                active[i]->what));
      }
      if (complete) {
        finish(*active[i], now_s());
        active.erase(active.begin() + static_cast<std::ptrdiff_t>(i));
        finished = true;
      } else {
        ++i;
      }
    }
    if (active.empty() || finished) {
      polling_since = -1;
      continue;
    }
    if (polling && (polling_since < 0 || moved)) polling_since = now;
    double sleep = polling ? backoff_s(now - polling_since) : wake - now;
    sleep = std::min(sleep, wake - now);
    if (sleep <= 0) continue;
    std::unique_lock<std::mutex> lk(mu_);
    work_cv_.wait_for(lk, std::chrono::duration<double>(sleep),
                      [&] { return stop_ || !incoming_.empty(); });
  }
}

}  // namespace parallel::mpi
