// The launcher's view of its environment, read once at start-up: where this process sits in an
// mpirun / srun job and how many cores it may use. Nothing else in the code reads the environment.
#pragma once

#include <memory>
#include <string>

#include "core/config.hpp"
#include "core/context.hpp"
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
};

LaunchEnv read_launch_env();
// train.threads = 0: a process bound to fewer cores than the node has (mpirun --bind-to,
// srun --cpus-per-task) uses the cores of its binding; an unbound one gets an even share of the
// node's cores among its local ranks.
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

}  // namespace launch
