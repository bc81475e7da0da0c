// Reads the job layout from the variables mpirun / Slurm set, and the usable core count.
#include "launch/environment.hpp"

#include "core/trainer.hpp"

#include <fmt/format.h>
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
  auto index = [](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (const char* v = std::getenv(n)) return std::atoi(v);
    return 0;
  };
  e.rank = index({"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"});
  e.local_rank = index({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"});
  if (const char* v = std::getenv("FLOTILLA_TEST_SAVE_PAUSE_S")) e.test_save_pause_s = std::atof(v);
  if (const char* v = std::getenv("OMP_NUM_THREADS")) e.omp_threads = std::max(0, std::atoi(v));
  e.node_cores = std::max(1u, std::thread::hardware_concurrency());
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    e.cores = std::max(1, CPU_COUNT(&set));
  else
    e.cores = e.node_cores;
  return e;
}

parallel::CommThreadClass comm_thread_class(const std::string& priority, const LaunchEnv& env,
                                            int threads) {
  using parallel::CommThreadClass;
  if (priority == "realtime") return CommThreadClass::realtime;
  if (priority == "normal") return CommThreadClass::normal;
  const bool oversubscribed = static_cast<int64_t>(env.local_size) * threads > env.node_cores;
  return oversubscribed ? CommThreadClass::realtime_with_link : CommThreadClass::normal;  // auto
}

int resolve_threads(int configured, const LaunchEnv& env) {
  if (configured > 0) return configured;
  if (env.omp_threads > 0) return env.omp_threads;
  // Bound by the launcher: its cores are this process's own.
  if (env.cores < env.node_cores) return env.cores;
  return std::max(1, env.cores / std::max(1, env.local_size));
}

Runtime::~Runtime() {
  // The context must not point at a communicator that is gone.
  ctx.comm = nullptr;
}

std::unique_ptr<Runtime> start_runtime(const core::Config& cfg) {
  auto rt = std::make_unique<Runtime>();
  rt->env = read_launch_env();
  // Layout and feature checks come before any communicator exists: bad input never leaves a
  // peer waiting in a collective.
  core::validate_layout(cfg, rt->env.world_size);
  core::check_supported(cfg, rt->env.world_size);
  parallel::Communicator* world = nullptr;
  if (rt->env.world_size > 1) {
    const parallel::CommThreadClass comm_thread = comm_thread_class(
        cfg.runtime.comm_thread_priority, rt->env, resolve_threads(cfg.train.threads, rt->env));
    rt->mpi = std::make_unique<parallel::MpiRuntime>(cfg.runtime.comm_timeout_s,
                                                     cfg.parallel.link.bandwidth_gbps,
                                                     cfg.parallel.link.latency_us,
                                                     parallel::LinkModel::parse_traffic(cfg.parallel.link.traffic),
                                                     comm_thread);
    world = &rt->mpi->world();
    if (rt->mpi->comm_thread_refused() && world->rank() == 0)
      fmt::print(
          "note: the communication thread should run in the real-time class (runtime."
          "comm_thread_priority: {}), but this process may not use it (it needs root, "
          "CAP_SYS_NICE or `ulimit -r` >= 1); it runs at normal priority, and where the compute "
          "threads outnumber the cores messages wait for a core (docs/parallelism.md)\n",
          cfg.runtime.comm_thread_priority);
  } else {
    rt->single = parallel::make_single_process_communicator();
    world = rt->single.get();
  }
  rt->ctx.comm = world;
  rt->ctx.rank = world->rank();
  rt->ctx.world_size = world->size();
  rt->ctx.local_size = rt->env.local_size;
  rt->ctx.threads = resolve_threads(cfg.train.threads, rt->env);
  core::apply_threads(rt->ctx);
  return rt;
}

}  // namespace launch
