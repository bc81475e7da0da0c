// What the multi-rank tests share: the job's MPI runtime and helpers that reduce a per-rank
// count of wrong values over the world, so every rank asserts on the same number.
#pragma once

#include <cstdint>

#include "core/context.hpp"
#include "parallel/communicator.hpp"
#include "parallel/mpi_communicator.hpp"

namespace testing {

parallel::MpiRuntime& mpi();

// Sum over the ranks of `comm` of a per-rank integer (exact in double up to 2^53).
inline int64_t sum_over(parallel::Communicator& comm, int64_t v) {
  double x = static_cast<double>(v);
  comm.all_reduce(core::Tensor::of(&x, {1}), parallel::ReduceOp::sum)->wait();
  return static_cast<int64_t>(x);
}

// A one-thread context on `world` (null: the trainer makes its own single-process world).
inline core::Context context_on(parallel::Communicator* world) {
  core::Context ctx;
  ctx.threads = 1;
  ctx.comm = world;
  if (world) {
    ctx.rank = world->rank();
    ctx.world_size = world->size();
  }
  core::apply_threads(ctx);
  return ctx;
}

}  // namespace testing
