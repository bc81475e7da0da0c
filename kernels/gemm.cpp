// Launcher for kernels::gemm: folds views to 2-D, checks the product's shapes, dispatches.
#include "kernels/cpu/gemm.hpp"

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

void gemm(Context& ctx, const Tensor& A, bool trans_a, const Tensor& B, bool trans_b,
          const Tensor& C, double alpha, double beta) {
  const char* op = "gemm";
  const bool gpu = detail::on_cuda(op, {&A, &B, &C});
  core::DType dt = detail::float_dtype(op, {&A, &B, &C});
  const auto [M, N, K] = detail::gemm_dims(op, A, trans_a, B, trans_b, C);
  if (M == 0 || N == 0) return;
  // Eigen's noalias() product would silently read a partly written C.
  FLOT_CHECK(C.data != A.data && C.data != B.data, "gemm: C {} aliases an input", C.shape_str());
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::gemm(ctx, M, N, K, A, trans_a, B, trans_b, C, alpha, beta, /*bf16=*/false);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::gemm<T>(M, N, K, A.ptr<T>(), trans_a, B.ptr<T>(), trans_b, C.ptr<T>(),
                 static_cast<T>(alpha), static_cast<T>(beta));
  });
}

}  // namespace kernels
