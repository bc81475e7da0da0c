// Launchers of the BF16 ops (kernels/bf16_ops.hpp). A BF16 GEMM is the FP32 GEMM on operands that
// hold BF16 values: each operand is rounded (f32) or widened (bf16) into a float scratch copy and
// the FP32 launcher does the rest (shape checks, empty work, Eigen). Products of two BF16 values
// are exact in float, so this is BF16 operands with FP32 accumulation.
#include <memory>

#include "kernels/bf16_ops.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kernels/cpu/fp8.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/moe_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

namespace {

// A float copy of a GEMM operand holding its BF16 values, with the operand's shape.
struct Bf16Operand {
  std::unique_ptr<float[]> buffer;
  Tensor view;
};

Bf16Operand bf16_operand(Context& ctx, const Tensor& t, const char* what) {
  detail::require_cpu(what, {&t});
  FLOT_CHECK(t.dtype == core::DType::f32 || t.dtype == core::DType::bf16,
             "{} is {}, expected f32 or bf16", what, core::dtype_name(t.dtype));
  const int64_t n = t.numel();
  Bf16Operand r{std::unique_ptr<float[]>(new float[static_cast<size_t>(n)]), t};
  r.view.data = r.buffer.get();
  r.view.dtype = core::DType::f32;
  const int threads = cpu::moe_threads(ctx);
  if (t.dtype == core::DType::f32) {
    cpu::bf16_round(t.ptr<float>(), r.buffer.get(), n, threads);
  } else {
    cpu::bf16_widen(static_cast<const uint16_t*>(t.data), r.buffer.get(), n, threads);
  }
  return r;
}

}  // namespace

void cast(Context& ctx, const Tensor& src, const Tensor& dst) {
  detail::require_cpu("cast", {&src, &dst});
  FLOT_CHECK(src.same_shape(dst), "cast: src {} and dst {} differ in shape", src.shape_str(),
             dst.shape_str());
  const int64_t n = src.numel();
  const int threads = cpu::moe_threads(ctx);
  if (src.dtype == core::DType::f32 && dst.dtype == core::DType::bf16) {
    cpu::bf16_narrow(src.ptr<float>(), static_cast<uint16_t*>(dst.data), n, threads);
  } else if (src.dtype == core::DType::bf16 && dst.dtype == core::DType::f32) {
    cpu::bf16_widen(static_cast<const uint16_t*>(src.data), dst.ptr<float>(), n, threads);
  } else {
    FLOT_THROW(core::InternalError, "cast: {} -> {} is not supported (f32 <-> bf16 only)",
               core::dtype_name(src.dtype), core::dtype_name(dst.dtype));
  }
}

void gemm_bf16(Context& ctx, const Tensor& A, bool trans_a, const Tensor& B, bool trans_b,
               const Tensor& C, double alpha, double beta) {
  core::check_dtype(C, core::DType::f32, "gemm_bf16 C");
  const Bf16Operand a = bf16_operand(ctx, A, "gemm_bf16 A");
  const Bf16Operand b = bf16_operand(ctx, B, "gemm_bf16 B");
  gemm(ctx, a.view, trans_a, b.view, trans_b, C, alpha, beta);
}

void grouped_gemm_bf16(Context& ctx, const Tensor& A, const Tensor& B, bool trans_b,
                       const Tensor& offsets, const Tensor& C, double alpha, double beta) {
  core::check_dtype(C, core::DType::f32, "grouped_gemm_bf16 C");
  const Bf16Operand a = bf16_operand(ctx, A, "grouped_gemm_bf16 A");
  const Bf16Operand b = bf16_operand(ctx, B, "grouped_gemm_bf16 B");
  grouped_gemm(ctx, a.view, b.view, trans_b, offsets, C, alpha, beta);
}

void grouped_gemm_wgrad_bf16(Context& ctx, const Tensor& dC, const Tensor& A, const Tensor& offsets,
                             const Tensor& dB) {
  core::check_dtype(dB, core::DType::f32, "grouped_gemm_wgrad_bf16 dB");
  const Bf16Operand dc = bf16_operand(ctx, dC, "grouped_gemm_wgrad_bf16 dC");
  const Bf16Operand a = bf16_operand(ctx, A, "grouped_gemm_wgrad_bf16 A");
  grouped_gemm_wgrad(ctx, dc.view, a.view, offsets, dB);
}

}  // namespace kernels
