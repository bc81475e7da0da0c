// Reads the job layout from the variables mpirun / Slurm set, and the usable core count.
#include "launch/environment.hpp"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace launch {
namespace {

int env_int(std::initializer_list<const char*> names, int fallback) {
  for (const char* n : names)
    if (const char* v = std::getenv(n)) {
      char* end = nullptr;
      long x = std::strtol(v, &end, 10);
      if (end != v && x > 0) return static_cast<int>(x);
    }
  return fallback;
}

}  // namespace

LaunchEnv read_launch_env() {
  LaunchEnv e;
  e.world_size = env_int({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}, 1);
  e.local_size = env_int({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}, 1);
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!r) r = std::getenv("PMI_RANK");
  e.rank = r ? std::atoi(r) : 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    e.cores = std::max(1, CPU_COUNT(&set));
  else
    e.cores = std::max(1u, std::thread::hardware_concurrency());
  return e;
}

int resolve_threads(int configured, const LaunchEnv& env) {
  if (configured > 0) return configured;
  return std::max(1, env.cores / std::max(1, env.local_size));
}

}  // namespace launch
