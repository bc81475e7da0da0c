// The launcher's view of its environment, read once at start-up: where this process sits in an
// mpirun / srun job and how many cores it may use. Nothing else in the code reads the environment.
#pragma once

#include <memory>
#include <exception>
#include <string>

#include "core/config.hpp"
#include "core/context.hpp"
#include "core/error.hpp"
#include "parallel/communicator.hpp"
#include "parallel/mpi_communicator.hpp"

namespace launch {

struct LaunchEnv {
  int world_size = 1;   // processes in the job (OMPI_COMM_WORLD_SIZE, PMI_SIZE or SLURM_NTASKS)
  int rank = 0;
  int local_rank = 0;   // rank among the processes of this node
  int local_size = 1;   // processes on this node
  int cores = 1;        // hardware threads this process may run on (its affinity mask)
  int node_cores = 1;   // hardware threads of the node
  int omp_threads = 0;  // OMP_NUM_THREADS when set (its first level), else 0
  // Test hook, never set in normal use: FLOTILLA_TEST_SAVE_PAUSE_S makes every rank pause this
  // long inside each checkpoint save (tests kill a process in the middle of a real save).
  double test_save_pause_s = 0;
};

LaunchEnv read_launch_env();
// runtime.comm_thread_priority: realtime, normal, or auto = real-time while the emulated link is
// on, where this node's ranks run more compute threads (threads per rank, resolve_threads) than
// the node has cores. Measured on two cores (docs/performance.md): with four one-thread ranks
// over an emulated link the real-time class halved the exposed all-to-all; with two ranks it
// exposed more than the normal class (it preempts the other rank's compute as readily as its
// own), and with four ranks and no link the quickstart's training took longer.
parallel::CommThreadClass comm_thread_class(const std::string& priority, const LaunchEnv& env,
                                            int threads);
// train.threads = 0: OMP_NUM_THREADS when the environment sets it (the usual way to pin a job's
// threads); else a process bound to fewer cores than the node has (mpirun --bind-to,
// srun --cpus-per-task) uses the cores of its binding, and an unbound one gets an even share of
// the node's cores among its local ranks.
int resolve_threads(int configured, const LaunchEnv& env);

// Everything a subcommand needs before it builds a trainer: the validated layout, the
// communicator (MPI when the job has several processes: initialized only after the config and
// layout passed validation, so bad input never leaves a peer waiting), and a context with its
// threads applied. Destroying it finalizes MPI.
struct Runtime {
  LaunchEnv env;
  std::unique_ptr<parallel::MpiRuntime> mpi;
  std::unique_ptr<parallel::Communicator> single;
  core::Context ctx;
  ~Runtime();
};
std::unique_ptr<Runtime> start_runtime(const core::Config& cfg);

// Runs `body` (a subcommand's work after start_runtime). An error that is not bad input, raised
// while the ranks of a job are communicating, ends the whole job at once (core::fatal, MPI_Abort)
// instead of unwinding into MPI_Finalize while the peers wait in a collective.
template <class F>
int guarded(const Runtime& rt, F&& body) {
  try {
    return body();
  } catch (const core::ConfigError&) {
    throw;
  } catch (const core::DataError&) {
    throw;
  } catch (const core::PeerError&) {
    throw;
  } catch (const std::exception& e) {
    if (rt.ctx.world_size > 1) core::fatal(e.what());
    throw;
  }
}

}  // namespace launch
