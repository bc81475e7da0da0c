// Timing helpers of the hidden benchmarks (tests/kernels/test_ops_bench.cpp,
// tests/kernels/test_fp8_bench.cpp): best-of-n wall time with the CPU time beside it, and the
// context they run in (2 threads unless told).
#pragma once

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "kernels/ops.hpp"

namespace bench {

inline double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Timing {
  double best_wall;  // seconds
  double mean_cpu;   // seconds of CPU time per run, all threads
};

// Best of `reps` runs of f, in wall seconds, after one warm-up run. On a shared machine the wall
// time depends on the neighbours, so the CPU seconds per run (all threads, spinning included) are
// measured too: flops / CPU seconds is a per-core rate that other load barely changes.
template <class F>
Timing best_timing(int reps, F&& f) {
  f();
  double best = 1e30;
  const double cpu0 = process_cpu_seconds();
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return {best, (process_cpu_seconds() - cpu0) / reps};
}

// best_timing, printed; returns the best wall time.
template <class F>
double best_seconds(const char* what, int reps, F&& f) {
  const Timing t = best_timing(reps, f);
  std::printf("  %s: best wall %.2f ms, mean CPU %.2f ms per run\n", what, t.best_wall * 1e3,
              t.mean_cpu * 1e3);
  return t.best_wall;
}

inline kernels::Context bench_context(int threads = 2) {
  kernels::Context ctx;
  ctx.threads = threads;
  core::apply_threads(ctx);
  return ctx;
}

}  // namespace bench
