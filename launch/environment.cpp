// Reads the job layout from the variables mpirun / Slurm set, and the usable core count.
#include "launch/environment.hpp"

#include "core/trainer.hpp"

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

std::unique_ptr<Runtime> start_runtime(const core::Config& cfg) {
  auto rt = std::make_unique<Runtime>();
  rt->env = read_launch_env();
  // Layout and feature checks come before any communicator exists: bad input never leaves a
  // peer waiting in a collective.
  core::validate_layout(cfg, rt->env.world_size);
  core::check_supported(cfg, rt->env.world_size);
  rt->comm = parallel::make_single_process_communicator();
  rt->ctx.comm = rt->comm.get();
  rt->ctx.rank = rt->comm->rank();
  rt->ctx.world_size = rt->comm->size();
  rt->ctx.threads = resolve_threads(cfg.train.threads, rt->env);
  core::apply_threads(rt->ctx);
  return rt;
}

}  // namespace launch
