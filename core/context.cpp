#include "core/context.hpp"

#include <omp.h>

#include <Eigen/Core>

namespace core {

void apply_threads(const Context& ctx) {
  if (ctx.threads <= 0) return;
  omp_set_num_threads(ctx.threads);
  Eigen::setNbThreads(ctx.threads);
}

}  // namespace core
