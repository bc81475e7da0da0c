// The emulated link: a message of b bytes arrives latency + 8b / bandwidth after it was posted,
// and messages leaving one rank share its bandwidth. Timed on two ranks: never early, and the
// fastest of four repetitions within 20%.
#include <catch2/catch.hpp>
#include <mpi.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "mpi_env.hpp"
#include "parallel/link_model.hpp"
#include "parallel/mpi_engine.hpp"

using core::Tensor;

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

TEST_CASE("link model arithmetic: latency, bandwidth and a shared outgoing queue", "[link]") {
  parallel::LinkModel off;
  CHECK_FALSE(off.enabled());
  CHECK(off.arrival(5.0, 1 << 20) == 5.0);
  parallel::LinkModel link(8.0, 10.0);  // 1 GB/s, 10 us
  CHECK(link.arrival(1.0, 1000000) == Approx(1.0 + 1e-3 + 10e-6));
  // posted at the same time: waits for the first to leave the link
  CHECK(link.arrival(1.0, 1000000) == Approx(1.0 + 2e-3 + 10e-6));
  // later, after the link is idle again
  CHECK(link.arrival(3.0, 0, 2) == Approx(3.0 + 30e-6));
}

TEST_CASE("a suspended link lets messages leave at once and resumes with an empty queue", "[link]") {
  parallel::LinkModel link(8.0, 10.0);  // 1 GB/s, 10 us
  CHECK(link.arrival(1.0, 1000000) == Approx(1.0 + 1e-3 + 10e-6));
  link.set_suspended(true);
  CHECK_FALSE(link.enabled());
  CHECK(link.arrival(1.0, 1000000) == 1.0);
  link.set_suspended(false);
  CHECK(link.enabled());
  // the message queued before the suspension no longer holds the link
  CHECK(link.arrival(1.0, 1000000) == Approx(1.0 + 1e-3 + 10e-6));
}

TEST_CASE("a link's bandwidth can be set later, keeping its latency and traffic", "[link]") {
  using parallel::Traffic;
  // Built without bandwidth (off), for the all-to-all only, 10 us: bench --a2a-ratio sets it.
  parallel::LinkModel link(0.0, 10.0, parallel::LinkModel::parse_traffic("expert_a2a"));
  CHECK_FALSE(link.enabled());
  CHECK(link.arrival(1.0, 1000000, 0, Traffic::expert_a2a) == 1.0);
  link.set_bandwidth(8.0);  // 1 GB/s
  CHECK(link.enabled());
  CHECK(link.arrival(1.0, 1000000, 0, Traffic::expert_a2a) == Approx(1.0 + 1e-3 + 10e-6));
  CHECK(link.arrival(1.0, 1000000, 0, Traffic::gradients) == 1.0);
  // a new bandwidth starts from an empty queue
  link.set_bandwidth(16.0);
  CHECK(link.arrival(1.0, 1000000, 0, Traffic::expert_a2a) == Approx(1.0 + 0.5e-3 + 10e-6));
  CHECK_THROWS(link.set_bandwidth(0.0));
}

TEST_CASE("link traffic classes: only the chosen ones take the link", "[link]") {
  using parallel::LinkModel;
  using parallel::Traffic;
  CHECK(LinkModel::parse_traffic("all") == LinkModel::kAllTraffic);
  const unsigned a2a = LinkModel::parse_traffic("expert_a2a");
  CHECK(LinkModel::parse_traffic("expert_a2a,pipeline") == (a2a | LinkModel::parse_traffic("pipeline")));
  LinkModel link(8.0, 10.0, a2a);  // 1 GB/s, 10 us, for the all-to-all only
  CHECK(link.arrival(1.0, 1000000, 0, Traffic::gradients) == 1.0);
  CHECK(link.arrival(1.0, 1000000, 0, Traffic::expert_a2a) == Approx(1.0 + 1e-3 + 10e-6));
  // traffic that bypasses the link does not queue behind it, nor delay what follows
  CHECK(link.arrival(1.0, 1000000, 0, Traffic::pipeline) == 1.0);
  CHECK(link.arrival(1.0, 1000000, 0, Traffic::expert_a2a) == Approx(1.0 + 2e-3 + 10e-6));
  for (const char* bad : {"", "expert", "all,gradients", "expert_a2a,,pipeline"}) {
    INFO(bad);
    CHECK_THROWS_AS(LinkModel::parse_traffic(bad), core::ConfigError);
  }
  CHECK_THROWS_WITH(LinkModel::parse_traffic("experts"),
                    Catch::Contains("'experts' is no traffic class") && Catch::Contains("expert_a2a"));
}

TEST_CASE("a timed message over the emulated link is never early and, at best, within 20% of the model", "[link]") {
  // 1 Gbit/s and 2 ms: a 4 MiB message takes 33.6 ms + 2 ms; two 2 MiB messages posted together
  // arrive at 18.8 ms and 35.6 ms. The emulation only delays, so every repetition must take at
  // least the modeled time; a loaded machine can only make one later, so the fastest of several
  // repetitions is held to 20%.
  auto w = testing::mpi().make_world("link", 1.0, 2000.0);
  if (w->size() < 2) return;
  const int64_t big = 4 << 20, half = 2 << 20;
  const double one = 2e-3 + big * 8 / 1e9, first = 2e-3 + half * 8 / 1e9, second = 2e-3 + 2 * half * 8 / 1e9;
  const int reps = 4;
  std::vector<char> a(big, 1), b(big, 0);
  std::vector<double> ts, t1s, t2s;
  for (int rep = 0; rep < reps; ++rep) {
    w->barrier();
    if (w->rank() == 0) {
      w->send_recv({{Tensor(a.data(), core::DType::i32, {big / 4}), 1, 7}}, {})->wait();
    } else if (w->rank() == 1) {
      double t0 = now();
      w->send_recv({}, {{Tensor(b.data(), core::DType::i32, {big / 4}), 0, 7}})->wait();
      ts.push_back(now() - t0);
    }
    w->barrier();
    if (w->rank() == 0) {
      w->send_recv({{Tensor(a.data(), core::DType::i32, {half / 4}), 1, 8},
                    {Tensor(a.data() + half, core::DType::i32, {half / 4}), 1, 9}},
                   {})->wait();
    } else if (w->rank() == 1) {
      double t0 = now();
      auto h1 = w->send_recv({}, {{Tensor(b.data(), core::DType::i32, {half / 4}), 0, 8}});
      auto h2 = w->send_recv({}, {{Tensor(b.data() + half, core::DType::i32, {half / 4}), 0, 9}});
      double t1 = -1, t2 = -1;
      while (t1 < 0 || t2 < 0) {
        if (t1 < 0 && h1->done()) t1 = now() - t0;
        if (t2 < 0 && h2->done()) t2 = now() - t0;
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      t1s.push_back(t1);
      t2s.push_back(t2);
      h1->wait();
      h2->wait();
    }
  }
  if (w->rank() == 1) {
    for (int r = 0; r < reps; ++r) {
      INFO("repetition " << r << ": 4 MiB took " << ts[r] * 1e3 << " ms (modeled " << one * 1e3
                         << "); two 2 MiB arrived at " << t1s[r] * 1e3 << " and " << t2s[r] * 1e3
                         << " ms (modeled " << first * 1e3 << " and " << second * 1e3 << ")");
      CHECK(ts[r] >= 0.97 * one);
      CHECK(t1s[r] >= 0.97 * first);
      CHECK(t2s[r] >= 0.97 * second);
    }
    const double t = *std::min_element(ts.begin(), ts.end());
    const double t1 = *std::min_element(t1s.begin(), t1s.end());
    const double t2 = *std::min_element(t2s.begin(), t2s.end());
    INFO("fastest: 4 MiB " << t * 1e3 << " ms, two 2 MiB at " << t1 * 1e3 << " and " << t2 * 1e3 << " ms");
    CHECK(t == Approx(one).epsilon(0.2));
    CHECK(t1 == Approx(first).epsilon(0.2));
    CHECK(t2 == Approx(second).epsilon(0.2));
  }
  // the statistics saw the traffic and the waiting
  auto s = w->stats();
  if (w->rank() <= 1) {
    CHECK(s.in_flight_s > 0.05);
    CHECK(s.total_wait_s() > 0.03);
  }
  if (w->rank() == 0) CHECK(s.bytes_sent[static_cast<int>(parallel::Traffic::pipeline)] == reps * 2 * big);
}

TEST_CASE("the communication thread runs in the real-time class when asked and allowed", "[link]") {
  // Whether this process may use SCHED_FIFO at all (root, CAP_SYS_NICE or RLIMIT_RTPRIO): the
  // engine must say it runs real-time exactly then, and stay normal when not asked.
  std::thread probe([] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); });
  sched_param sp{};
  sp.sched_priority = 1;
  const bool allowed = pthread_setschedparam(probe.native_handle(), SCHED_FIFO, &sp) == 0;
  probe.join();
  using parallel::CommThreadClass;
  const int rank = testing::mpi().world_rank();
  parallel::mpi::Engine normal(rank, 30, parallel::LinkModel(), CommThreadClass::normal);
  parallel::mpi::Engine realtime(rank, 30, parallel::LinkModel(), CommThreadClass::realtime);
  CHECK_FALSE(normal.realtime());
  CHECK_FALSE(normal.realtime_refused());
  CHECK(realtime.realtime() == allowed);
  CHECK(realtime.realtime_refused() == !allowed);
  // With a link: real-time while the link is on, normal while suspended or off.
  parallel::mpi::Engine linked(rank, 30, parallel::LinkModel(), CommThreadClass::realtime_with_link);
  CHECK_FALSE(linked.realtime());  // no link yet
  linked.set_link_bandwidth(1.0);
  CHECK(linked.realtime() == allowed);
  linked.set_link_suspended(true);
  CHECK_FALSE(linked.realtime());
  linked.set_link_suspended(false);
  CHECK(linked.realtime() == allowed);
  // Either way it moves messages: a send to this rank itself, posted 5 ms late.
  for (parallel::mpi::Engine* e : {&normal, &realtime}) {
    MPI_Comm self = MPI_COMM_NULL;
    REQUIRE(MPI_Comm_dup(MPI_COMM_SELF, &self) == MPI_SUCCESS);
    int out = 42 + rank, in = 0;
    auto op = std::make_shared<parallel::mpi::RequestOp>();
    op->what = op->label = "a message to itself";
    op->add(parallel::mpi::now_s(), [&](std::vector<MPI_Request>& reqs) {
      reqs.emplace_back();
      MPI_Irecv(&in, 1, MPI_INT, 0, 3, self, &reqs.back());
    });
    op->add(parallel::mpi::now_s() + 5e-3, [&](std::vector<MPI_Request>& reqs) {
      reqs.emplace_back();
      MPI_Isend(&out, 1, MPI_INT, 0, 3, self, &reqs.back());
    });
    const double t0 = now();
    e->submit(op)->wait();
    CHECK(now() - t0 >= 4e-3);
    CHECK(in == 42 + rank);
    MPI_Comm_free(&self);
  }
}
