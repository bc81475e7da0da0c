// Scheduling of per-expert jobs over contiguous row segments, shared by the grouped GEMMs
// (kernels/cpu/moe_grouped_gemm.cpp, kernels/cpu/fp8_gemm.cpp, kernels/cpu/bf16.cpp).
//
// A segment holding more than 1/threads of all rows would serialize an expert-parallel loop, so
// such "big" segments run one after another, each with Eigen's own threads. The rest run in an
// OpenMP loop over experts, largest first (dynamic schedule, so the longest jobs do not end up
// last); inside that parallel region Eigen sees omp_get_num_threads() > 1 and stays
// single-threaded (Eigen/src/Core/products/Parallelizer.h), so nothing nests. A job can tell the
// two cases apart with omp_in_parallel().
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace kernels::cpu {

// Runs job(e) for every expert with rows, as described at the top of the file.
template <class Job>
void schedule_segments(int e_count, const int32_t* offsets, int threads, const Job& job) {
  const int64_t total = offsets[e_count];
  std::vector<int> big, small;
  for (int e = 0; e < e_count; ++e) {
    const int64_t rows = offsets[e + 1] - offsets[e];
    if (rows == 0) continue;
    (threads > 1 && rows * threads > total ? big : small).push_back(e);
  }
  for (int e : big) job(e);
  if (small.size() <= 1 || threads <= 1) {
    for (int e : small) job(e);
    return;
  }
  std::stable_sort(small.begin(), small.end(), [&](int a, int b) {
    return offsets[a + 1] - offsets[a] > offsets[b + 1] - offsets[b];
  });
  const int64_t count = static_cast<int64_t>(small.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::min<int64_t>(threads, count))
  for (int64_t i = 0; i < count; ++i) job(small[i]);
}

}  // namespace kernels::cpu
