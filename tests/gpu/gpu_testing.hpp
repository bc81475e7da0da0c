// Helpers of the GPU tests: the process's CUDA runtime and context, device copies of host data,
// host copies of device tensors, and the comparisons (CPU op = oracle).
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/arena.hpp"
#include "core/cuda_runtime.hpp"
#include "core/tensor.hpp"
#include "kernels/ops.hpp"

namespace gpu_testing {

core::CudaRuntime& runtime();
core::Context& ctx();

using core::DType;
using core::Tensor;

// Device memory of one test: everything allocated from it is freed at the end of the test.
struct Device {
  core::BumpArena arena{0, &runtime().memory()};

  // A device tensor holding `host` (any element type matching dtype's size).
  template <class T>
  Tensor upload(const std::vector<T>& host, std::initializer_list<int64_t> dims,
                DType dtype = core::dtype_of<T>()) {
    Tensor t = arena.alloc(dtype, dims);
    REQUIRE(t.bytes() == host.size() * sizeof(T));
    Tensor h = t;
    h.data = const_cast<T*>(host.data());
    h.device = core::Device::cpu;
    kernels::copy(h, t);
    return t;
  }
  Tensor zeros(DType dtype, std::initializer_list<int64_t> dims) {
    return arena.zeros(dtype, dims);
  }
  Tensor alloc(DType dtype, std::initializer_list<int64_t> dims) {
    return arena.alloc(dtype, dims);
  }
};

// The contents of a device tensor (after the device finished, and with no recorded error).
template <class T>
std::vector<T> download(const Tensor& t) {
  runtime().raise_device_errors();
  std::vector<T> host(t.bytes() / sizeof(T));
  Tensor h = t;
  h.data = host.data();
  h.device = core::Device::cpu;
  kernels::copy(t, h);
  return host;
}

// A host view of a vector with the given shape.
template <class T>
Tensor view(std::vector<T>& v, std::initializer_list<int64_t> dims,
            DType dtype = core::dtype_of<T>()) {
  return Tensor(v.data(), dtype, dims);
}

// max |got - want| / max(max |want|, floor): the per-op thresholds below bound this.
inline double rel_error(const std::vector<float>& got, const std::vector<float>& want,
                        double floor = 1e-30) {
  REQUIRE(got.size() == want.size());
  double peak = floor, worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    peak = std::max(peak, std::fabs(double(want[i])));
    const double e = std::fabs(double(got[i]) - double(want[i]));
    if (!(e <= worst)) worst = e;  // NaN makes it NaN, which fails every threshold
  }
  return worst / peak;
}

inline std::vector<float> random(size_t n, uint64_t seed, double amp = 1.0) {
  return testing::random_vector<float>(n, seed, amp);
}

// Checks that got matches want within `tol` relative to want's peak, naming the quantity.
#define GPU_CHECK_CLOSE(what, got, want, tol)                                              \
  do {                                                                                     \
    const double gpu_err_ = ::gpu_testing::rel_error((got), (want));                       \
    INFO(what << ": max |gpu - cpu| / max |cpu| = " << gpu_err_ << " (threshold " << (tol) \
              << ")");                                                                     \
    CHECK(gpu_err_ <= (tol));                                                              \
  } while (0)

}  // namespace gpu_testing
