// Host-side logic of the NCCL communicator (parallel/device_comm.hpp), tested without a GPU: the
// bounded wait (done, failure, timeout against a fake clock) and the per-peer byte ranges of a
// variable all-to-all.
#include <catch2/catch.hpp>

#include "core/context.hpp"
#include "core/error.hpp"
#include "parallel/device_comm.hpp"

using parallel::PollState;
using parallel::WaitOutcome;

TEST_CASE("poll_wait: done, failed, and timed out on the wait's clock", "[device_comm]") {
  double now = 0;
  auto clock = [&] { return now; };
  int calls = 0;
  auto done_third = [&](std::string*) {
    now += 1.0;
    return ++calls == 3 ? PollState::done : PollState::pending;
  };
  WaitOutcome w = parallel::poll_wait(done_third, 100.0, clock);
  CHECK(w.kind == WaitOutcome::done);
  CHECK(calls == 3);

  auto fails = [&](std::string* e) {
    *e = "NCCL asynchronous error: remote process exited";
    return PollState::failed;
  };
  w = parallel::poll_wait(fails, 100.0, clock);
  CHECK(w.kind == WaitOutcome::failed);
  CHECK(w.error.find("remote process") != std::string::npos);

  calls = 0;
  auto never = [&](std::string*) {
    now += 0.5;
    ++calls;
    return PollState::pending;
  };
  w = parallel::poll_wait(never, 2.0, clock);
  CHECK(w.kind == WaitOutcome::timed_out);
  CHECK(w.waited_s >= 2.0);
  CHECK(calls == 4);
}

TEST_CASE("plan_all_to_all: byte ranges per peer, empty messages left out, self copied",
          "[device_comm]") {
  // Rank 1 of 4, rows of 12 bytes.
  const auto p = parallel::plan_all_to_all(1, {2, 3, 0, 1}, {1, 3, 4, 0}, 12);
  REQUIRE(p.sends.size() == 2);  // to ranks 0 and 3 (rank 2 gets nothing)
  CHECK(p.sends[0].peer == 0);
  CHECK(p.sends[0].offset == 0);
  CHECK(p.sends[0].bytes == 24);
  CHECK(p.sends[1].peer == 3);
  CHECK(p.sends[1].offset == 60);
  CHECK(p.sends[1].bytes == 12);
  REQUIRE(p.recvs.size() == 2);  // from ranks 0 and 2
  CHECK(p.recvs[0].peer == 0);
  CHECK(p.recvs[0].bytes == 12);
  CHECK(p.recvs[1].peer == 2);
  CHECK(p.recvs[1].offset == 48);
  CHECK(p.recvs[1].bytes == 48);
  CHECK(p.self_src == 24);
  CHECK(p.self_dst == 12);
  CHECK(p.self_bytes == 36);
  CHECK_THROWS_AS(parallel::plan_all_to_all(0, {1, 1}, {2, 1}, 4), core::InternalError);
}

TEST_CASE("the NCCL communicator refuses to start without the CUDA backend or a GPU",
          "[device_comm]") {
  auto world = parallel::make_single_process_communicator();
  core::Context ctx;
  if (!parallel::nccl_built()) {
    CHECK_THROWS_AS(parallel::make_nccl_communicator(*world, ctx, 10), core::ConfigError);
  } else {
    // No CUDA runtime attached to the context: refused before any NCCL call.
    CHECK_THROWS_AS(parallel::make_nccl_communicator(*world, ctx, 10), core::InternalError);
  }
}
