// Launchers of the grouped GEMM over per-expert row segments and its weight gradient
// (kernels/moe_ops.hpp). A, C and dC may be views of any rank, read as [rows, last dim].
#include "kernels/cpu/moe_check.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/moe_ops.hpp"

namespace kernels {

void grouped_gemm(Context& ctx, const Tensor& A, const Tensor& B, bool trans_b,
                  const Tensor& offsets, const Tensor& C, double alpha, double beta) {
  core::check_shape(B, {-1, -1, -1}, "grouped_gemm B");
  const int64_t e = B.shape[0], m = A.rows(), kd = A.cols();
  const int64_t n = trans_b ? B.shape[1] : B.shape[2];
  const int64_t b_k = trans_b ? B.shape[2] : B.shape[1];
  FLOT_CHECK(b_k == kd, "grouped_gemm: A {} and B {} (trans_b = {}) disagree on K ({} vs {})",
             A.shape_str(), B.shape_str(), trans_b, kd, b_k);
  FLOT_CHECK(C.rows() == m && C.cols() == n, "grouped_gemm C has shape {}, expected [{}, {}]",
             C.shape_str(), m, n);
  core::check_shape(offsets, {e + 1}, "grouped_gemm offsets");
  moe_check::float_dtype(A, "grouped_gemm A");
  core::check_dtype(B, A.dtype, "grouped_gemm B");
  core::check_dtype(C, A.dtype, "grouped_gemm C");
  core::check_dtype(offsets, core::DType::i32, "grouped_gemm offsets");
  moe_check::on_cpu({{&A, "grouped_gemm A"}, {&B, "grouped_gemm B"}, {&C, "grouped_gemm C"},
                     {&offsets, "grouped_gemm offsets"}});
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
  core::check_shape(dB, {-1, -1, -1}, "grouped_gemm_wgrad dB");
  const int64_t e = dB.shape[0], n = dB.shape[1], kd = dB.shape[2], m = A.rows();
  FLOT_CHECK(A.cols() == kd, "grouped_gemm_wgrad: A {} and dB {} disagree on K", A.shape_str(),
             dB.shape_str());
  FLOT_CHECK(dC.rows() == m && dC.cols() == n, "grouped_gemm_wgrad dC has shape {}, expected [{}, {}]",
             dC.shape_str(), m, n);
  core::check_shape(offsets, {e + 1}, "grouped_gemm_wgrad offsets");
  moe_check::float_dtype(A, "grouped_gemm_wgrad A");
  core::check_dtype(dC, A.dtype, "grouped_gemm_wgrad dC");
  core::check_dtype(dB, A.dtype, "grouped_gemm_wgrad dB");
  core::check_dtype(offsets, core::DType::i32, "grouped_gemm_wgrad offsets");
  moe_check::on_cpu({{&dC, "grouped_gemm_wgrad dC"}, {&A, "grouped_gemm_wgrad A"},
                     {&offsets, "grouped_gemm_wgrad offsets"}, {&dB, "grouped_gemm_wgrad dB"}});
  moe_check::segment_offsets(offsets, m, "grouped_gemm_wgrad offsets");
  if (m == 0 || n == 0 || kd == 0) return;
  moe_check::dispatch_float(A.dtype, [&](auto tag) {
    using T = decltype(tag);
    cpu::grouped_gemm_wgrad<T>(m, n, kd, static_cast<int>(e), dC.ptr<T>(), A.ptr<T>(),
                               offsets.ptr<int32_t>(), dB.ptr<T>(), cpu::moe_threads(ctx));
  });
}

}  // namespace kernels
