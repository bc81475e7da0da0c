// Host-side helpers of the NCCL communicator: the bounded polling wait and the all-to-all plan.
#include "parallel/device_comm.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/error.hpp"

namespace parallel {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

WaitOutcome poll_wait(const std::function<PollState(std::string* error)>& poll, double timeout_s,
                      const std::function<double()>& clock) {
  const double t0 = clock();
  double sleep_s = 1e-6;
  WaitOutcome w;
  for (;;) {
    const PollState s = poll(&w.error);
    w.waited_s = clock() - t0;
    if (s == PollState::done) {
      w.kind = WaitOutcome::done;
      return w;
    }
    if (s == PollState::failed) {
      w.kind = WaitOutcome::failed;
      return w;
    }
    if (w.waited_s >= timeout_s) {
      w.kind = WaitOutcome::timed_out;
      return w;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(sleep_s));
    sleep_s = std::min(100e-6, sleep_s * 2);
  }
}

ExchangePlan plan_all_to_all(int rank, const std::vector<int64_t>& send_counts,
                             const std::vector<int64_t>& recv_counts, int64_t row_bytes) {
  FLOT_CHECK(send_counts.size() == recv_counts.size() && rank >= 0 &&
                 rank < static_cast<int>(send_counts.size()),
             "all_to_all_v plan: rank {} with {} send and {} receive counts", rank,
             send_counts.size(), recv_counts.size());
  ExchangePlan p;
  int64_t so = 0, ro = 0;
  for (int r = 0; r < static_cast<int>(send_counts.size()); ++r) {
    const int64_t sb = send_counts[r] * row_bytes, rb = recv_counts[r] * row_bytes;
    if (r == rank) {
      FLOT_CHECK(sb == rb, "all_to_all_v: rank {} sends itself {} bytes but expects {}", rank, sb,
                 rb);
      p.self_src = so;
      p.self_dst = ro;
      p.self_bytes = sb;
    } else {
      if (sb > 0) p.sends.push_back({r, so, sb});
      if (rb > 0) p.recvs.push_back({r, ro, rb});
    }
    so += sb;
    ro += rb;
  }
  return p;
}

}  // namespace parallel
