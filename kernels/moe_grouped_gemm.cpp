// Launchers of the grouped GEMM over per-expert row segments and its weight gradient
// (kernels/moe_ops.hpp). A, C and dC may be views of any rank, read as [rows, last dim]. On the
// GPU the offsets are checked by the kernel (kernels/cuda_ops.hpp).
#include "kernels/cpu/moe_check.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/moe_ops.hpp"

namespace kernels {

void grouped_gemm(Context& ctx, const Tensor& A, const Tensor& B, bool trans_b,
                  const Tensor& offsets, const Tensor& C, double alpha, double beta) {
  const auto [e, m, n, kd] = moe_check::grouped_dims("grouped_gemm", A, B, trans_b, offsets, C);
  moe_check::float_dtype(A, "grouped_gemm A");
  core::check_dtype(B, A.dtype, "grouped_gemm B");
  core::check_dtype(C, A.dtype, "grouped_gemm C");
  if (moe_check::on_cuda({{&A, "grouped_gemm A"},
                          {&B, "grouped_gemm B"},
                          {&C, "grouped_gemm C"},
                          {&offsets, "grouped_gemm offsets"}})) {
    moe_check::f32_on_cuda(A, "grouped_gemm A");
    if (m > 0 && n > 0) cuda::grouped_gemm(ctx, A, B, trans_b, offsets, C, alpha, beta, false);
    return;
  }
  moe_check::segment_offsets(offsets, m, "grouped_gemm offsets");
  if (m == 0 || n == 0) return;
  moe_check::dispatch_float(A.dtype, [&](auto tag) {
    using T = decltype(tag);
    cpu::grouped_gemm<T>(m, n, kd, static_cast<int>(e), A.ptr<T>(), B.ptr<T>(), trans_b,
                         offsets.ptr<int32_t>(), C.ptr<T>(), static_cast<T>(alpha),
                         static_cast<T>(beta), cpu::moe_threads(ctx));
  });
}

void grouped_gemm_wgrad(Context& ctx, const Tensor& dC, const Tensor& A, const Tensor& offsets,
                        const Tensor& dB) {
  const auto [e, m, n, kd] =
      moe_check::grouped_wgrad_dims("grouped_gemm_wgrad", dC, A, offsets, dB);
  moe_check::float_dtype(A, "grouped_gemm_wgrad A");
  core::check_dtype(dC, A.dtype, "grouped_gemm_wgrad dC");
  core::check_dtype(dB, A.dtype, "grouped_gemm_wgrad dB");
  if (moe_check::on_cuda({{&dC, "grouped_gemm_wgrad dC"},
                          {&A, "grouped_gemm_wgrad A"},
                          {&offsets, "grouped_gemm_wgrad offsets"},
                          {&dB, "grouped_gemm_wgrad dB"}})) {
    moe_check::f32_on_cuda(A, "grouped_gemm_wgrad A");
    if (m > 0 && n > 0 && kd > 0) cuda::grouped_gemm_wgrad(ctx, dC, A, offsets, dB, false);
    return;
  }
  moe_check::segment_offsets(offsets, m, "grouped_gemm_wgrad offsets");
  if (m == 0 || n == 0 || kd == 0) return;
  moe_check::dispatch_float(A.dtype, [&](auto tag) {
    using T = decltype(tag);
    cpu::grouped_gemm_wgrad<T>(m, n, kd, static_cast<int>(e), dC.ptr<T>(), A.ptr<T>(),
                               offsets.ptr<int32_t>(), dB.ptr<T>(), cpu::moe_threads(ctx));
  });
}

}  // namespace kernels
