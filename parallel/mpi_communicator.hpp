// The MPI implementation of Communicator and the process-wide MPI runtime.
//
// MpiRuntime initializes MPI (MPI_THREAD_MULTIPLE: the communication thread posts and tests
// while the main thread may split communicators or abort), starts the Engine (the communication
// thread), installs the fatal handler that ends the whole job with MPI_Abort, and finalizes MPI
// on destruction. Every communicator of the process shares its Engine, so all of them progress on
// one thread and their messages share one emulated link.
#pragma once

#include <memory>
#include <string>

#include "core/config.hpp"
#include "parallel/communicator.hpp"
#include "parallel/link_model.hpp"

namespace parallel {

// True between this process's MPI initialization and finalization in a job of several ranks.
bool mpi_active();

class MpiRuntime {
 public:
  // Initializes MPI. comm_timeout_s and the link come from the validated config; link_traffic:
  // LinkModel::parse_traffic of parallel.link.traffic; comm_thread: the communication thread's
  // scheduling class (runtime.comm_thread_priority, see mpi::Engine).
  MpiRuntime(double comm_timeout_s, double bandwidth_gbps, double latency_us,
             unsigned link_traffic = LinkModel::kAllTraffic,
             CommThreadClass comm_thread = CommThreadClass::normal);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  // The world communicator (owned by the runtime; valid until it is destroyed).
  Communicator& world();
  int world_rank() const;
  int world_size() const;
  // Whether the communication thread was asked to run in the real-time class and refused (the
  // process may not use the class).
  bool comm_thread_refused() const;
  // A duplicate of the world on its own communication thread and emulated link (collective):
  // for tests and benchmarks that compare link settings within one job.
  std::unique_ptr<Communicator> make_world(const std::string& name, double bandwidth_gbps,
                                           double latency_us);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace parallel
