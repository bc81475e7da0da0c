// The launcher's view of its environment, read once at start-up: where this process sits in an
// mpirun / srun job and how many cores it may use. Nothing else in the code reads the environment.
#pragma once

#include <memory>
#include <string>

#include "core/config.hpp"
#include "core/context.hpp"
#include "parallel/communicator.hpp"

namespace launch {

struct LaunchEnv {
  int world_size = 1;   // processes in the job (OMPI_COMM_WORLD_SIZE, PMI_SIZE or SLURM_NTASKS)
  int rank = 0;
  int local_size = 1;   // processes on this node
  int cores = 1;        // hardware threads this process may run on
};

LaunchEnv read_launch_env();
// train.threads = 0 means this node's cores shared evenly among its local ranks.
int resolve_threads(int configured, const LaunchEnv& env);

// Everything a subcommand needs before it builds a trainer: the validated layout, the
// communicator of this build, and a context with its threads applied.
struct Runtime {
  LaunchEnv env;
  std::unique_ptr<parallel::Communicator> comm;
  core::Context ctx;
};
std::unique_ptr<Runtime> start_runtime(const core::Config& cfg);

}  // namespace launch
