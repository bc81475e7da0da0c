// The launchers' device dispatch, without a GPU: a call that mixes host and GPU tensors is a bug
// and throws before anything runs, and a GPU call in f64 is refused (the CUDA ops are f32 only).
// Tensors here only claim to live on a GPU: the checks fail before any pointer is used.
#include <catch2/catch.hpp>
#include <vector>

#include "core/error.hpp"
#include "kernels/moe_ops.hpp"
#include "kernels/ops.hpp"

namespace {

core::Tensor on_gpu(core::Tensor t) {
  t.device = core::Device::cuda;
  return t;
}

}  // namespace

TEST_CASE("launchers refuse calls that mix devices or run f64 on the GPU", "[dispatch]") {
  core::Context ctx;
  std::vector<float> a(12), b(12), c(9);
  std::vector<double> d(12);
  const core::Tensor A = core::Tensor::of(a.data(), {3, 4}), B = core::Tensor::of(b.data(), {4, 3});
  const core::Tensor C = core::Tensor::of(c.data(), {3, 3});
  CHECK_THROWS_WITH(kernels::gemm(ctx, on_gpu(A), false, B, false, C),
                    Catch::Contains("on the CPU") && Catch::Contains("on the GPU"));
  CHECK_THROWS_WITH(kernels::swiglu_forward(ctx, on_gpu(core::Tensor::of(d.data(), {2, 6})),
                                            on_gpu(core::Tensor::of(d.data(), {2, 3}))),
                    Catch::Contains("f32"));
  CHECK_THROWS_AS(kernels::axpy(1.0, on_gpu(A), B), core::InternalError);
  std::vector<int32_t> off = {0, 3};
  CHECK_THROWS_WITH(
      kernels::grouped_gemm(ctx, on_gpu(A), on_gpu(core::Tensor::of(b.data(), {1, 3, 4})), true,
                            core::Tensor::of(off.data(), {2}), on_gpu(C)),
      Catch::Contains("offsets"));
}
