// How a rank picks its thread count when train.threads is 0, and its communication thread's class.
#include <catch2/catch.hpp>

#include "launch/environment.hpp"

TEST_CASE("train.threads 0: OMP_NUM_THREADS, else the binding, else a share of the node", "[env]") {
  launch::LaunchEnv e;
  e.node_cores = 8;
  e.cores = 8;
  e.local_size = 2;
  CHECK(launch::resolve_threads(3, e) == 3);  // an explicit setting wins
  CHECK(launch::resolve_threads(0, e) == 4);  // unbound: the node's cores over its local ranks
  e.cores = 2;                                // bound to 2 cores by the launcher
  CHECK(launch::resolve_threads(0, e) == 2);
  e.omp_threads = 1;                          // OMP_NUM_THREADS=1, as launch/test.sh sets
  CHECK(launch::resolve_threads(0, e) == 1);
  CHECK(launch::resolve_threads(5, e) == 5);
}

TEST_CASE("runtime.comm_thread_priority auto: real-time with a link where threads outnumber cores",
          "[env]") {
  using parallel::CommThreadClass;
  launch::LaunchEnv e;
  e.node_cores = 2;
  e.local_size = 2;
  CHECK(launch::comm_thread_class("auto", e, 1) == CommThreadClass::normal);  // a core per rank
  e.local_size = 4;  // four ranks on two cores
  CHECK(launch::comm_thread_class("auto", e, 1) == CommThreadClass::realtime_with_link);
  e.node_cores = 8;
  CHECK(launch::comm_thread_class("auto", e, 2) == CommThreadClass::normal);  // 4 x 2 on 8 cores
  CHECK(launch::comm_thread_class("auto", e, 3) == CommThreadClass::realtime_with_link);
  CHECK(launch::comm_thread_class("realtime", e, 1) == CommThreadClass::realtime);
  CHECK(launch::comm_thread_class("normal", e, 3) == CommThreadClass::normal);
}
