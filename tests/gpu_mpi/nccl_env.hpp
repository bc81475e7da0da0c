// What the NCCL tests share: the MPI runtime, the rank's CUDA runtime and context, the NCCL world
// communicator, device copies, and a count of wrong values summed over the ranks.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "core/arena.hpp"
#include "core/cuda_runtime.hpp"
#include "kernels/ops.hpp"
#include "parallel/device_comm.hpp"
#include "parallel/mpi_communicator.hpp"

namespace nccl_testing {

parallel::MpiRuntime& mpi();
parallel::Communicator& nccl();
core::CudaRuntime& cuda();
core::Context& ctx();

template <class T>
core::Tensor upload(core::BumpArena& arena, const std::vector<T>& v) {
  core::Tensor d = arena.alloc(core::dtype_of<T>(), {int64_t(v.size())});
  kernels::copy(core::Tensor::of(v.data(), {int64_t(v.size())}), d);
  return d;
}

template <class T>
std::vector<T> download(const core::Tensor& d) {
  cuda().synchronize();
  std::vector<T> v(size_t(d.numel()));
  kernels::copy(d, core::Tensor::of(v.data(), {d.numel()}));
  return v;
}

// Sum over the world of a per-rank count (through MPI on the host).
inline int64_t sum_over_ranks(int64_t v) {
  double x = static_cast<double>(v);
  mpi().world().all_reduce(core::Tensor::of(&x, {1}), parallel::ReduceOp::sum)->wait();
  return static_cast<int64_t>(x);
}

template <class T>
int64_t wrong(const std::vector<T>& got, const std::vector<T>& want) {
  int64_t bad = got.size() != want.size() ? 1 : 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) bad += got[i] != want[i];
  return bad;
}

}  // namespace nccl_testing
