// Launcher for kernels::gemm: folds views to 2-D, checks the product's shapes, dispatches.
#include "kernels/cpu/gemm.hpp"

#include "kernels/cpu/dispatch.hpp"
#include "kernels/ops.hpp"

namespace kernels {

void gemm(Context& ctx, const Tensor& A, bool trans_a, const Tensor& B, bool trans_b,
          const Tensor& C, double alpha, double beta) {
  const char* op = "gemm";
  detail::require_cpu(op, {&A, &B, &C});
  core::DType dt = detail::float_dtype(op, {&A, &B, &C});
  FLOT_CHECK(A.ndim >= 2 && B.ndim >= 2 && C.ndim >= 2, "gemm: A {}, B {}, C {} must be >= 2-D",
             A.shape_str(), B.shape_str(), C.shape_str());
  const int64_t M = trans_a ? A.cols() : detail::fold_rows(A);
  const int64_t K = trans_a ? detail::fold_rows(A) : A.cols();
  const int64_t Kb = trans_b ? B.cols() : detail::fold_rows(B);
  const int64_t N = trans_b ? detail::fold_rows(B) : B.cols();
  FLOT_CHECK(K == Kb && detail::fold_rows(C) == M && C.cols() == N,
             "gemm: op(A) of A {} (trans {}) times op(B) of B {} (trans {}) into C {}",
             A.shape_str(), trans_a, B.shape_str(), trans_b, C.shape_str());
  if (M == 0 || N == 0) return;
  // Eigen's noalias() product would silently read a partly written C.
  FLOT_CHECK(C.data != A.data && C.data != B.data, "gemm: C {} aliases an input", C.shape_str());
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::gemm<T>(M, N, K, A.ptr<T>(), trans_a, B.ptr<T>(), trans_b, C.ptr<T>(),
                 static_cast<T>(alpha), static_cast<T>(beta));
  });
}

}  // namespace kernels
