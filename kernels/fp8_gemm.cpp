// Launchers of the FP8 GEMMs (kernels/fp8_ops.hpp): check tilings, shapes and offsets, return on
// empty work, run the CPU emulation (kernels/cpu/fp8_gemm.cpp).
#include "kernels/cpu/dispatch.hpp"
#include "kernels/cpu/fp8.hpp"
#include "kernels/cpu/fp8_check.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/fp8_ops.hpp"

namespace kernels {

namespace {

using cpu::Fp8GemmKind;
constexpr Fp8Tiling kRow = Fp8Tiling::row_1x128, kBlock = Fp8Tiling::block_128x128,
                    kCol = Fp8Tiling::col_128x1;

// out is f32 on the CPU and folds to [rows, cols].
void check_out(const Tensor& out, int64_t rows, int64_t cols, const char* what) {
  detail::require_cpu(what, {&out});
  core::check_dtype(out, core::DType::f32, what);
  FLOT_CHECK(out.ndim >= 2 && detail::fold_rows(out) == rows && out.cols() == cols,
             "{} has shape {}, expected [{}, {}]", what, out.shape_str(), rows, cols);
}

void check_offsets(const Tensor& offsets, int64_t experts, int64_t rows, const char* what) {
  core::check_shape(offsets, {experts + 1}, what);
  fp8_check::offsets(offsets, rows, what);
}

// The reduction dims of the two operands agree.
void check_inner(int64_t a, int64_t b, const char* op, const Fp8Tensor& x, const Fp8Tensor& y) {
  FLOT_CHECK(a == b, "{}: operands {} and {} disagree on the reduction dimension ({} vs {})", op,
             x.codes.shape_str(), y.codes.shape_str(), a, b);
}

// Forward and data gradient share their checks: the activation side `a` is 1x128-tiled
// [M, red], the weight w is [N, K] (or [E, N, K]) in 128x128 blocks, the output [M, out_cols].
void check_linear(Fp8GemmKind kind, const Fp8Tensor& a, const Fp8Tensor& w, const Tensor& out,
                  bool grouped, const char* op) {
  fp8_check::dense(a, kRow, op);
  fp8_check::dense(w, kBlock, op);
  FLOT_CHECK(w.codes.ndim == (grouped ? 3 : 2), "{}: weight codes {} must be {}-D", op,
             w.codes.shape_str(), grouped ? 3 : 2);
  const int64_t n = w.codes.size(-2), k = w.codes.cols();
  const bool fwd = kind == Fp8GemmKind::forward;
  check_inner(a.codes.cols(), fwd ? k : n, op, a, w);
  check_out(out, detail::fold_rows(a.codes), fwd ? n : k, op);
}

void linear(Context& ctx, Fp8GemmKind kind, const Fp8Tensor& a, const Fp8Tensor& w,
            const Tensor& out, double beta, const char* op) {
  check_linear(kind, a, w, out, false, op);
  if (out.numel() == 0) return;
  cpu::fp8_gemm(kind, a, w, out.ptr<float>(), static_cast<float>(beta), cpu::moe_threads(ctx));
}

void grouped_linear(Context& ctx, Fp8GemmKind kind, const Fp8Tensor& a, const Fp8Tensor& w,
                    const Tensor& offsets, const Tensor& out, double beta, const char* op) {
  check_linear(kind, a, w, out, true, op);
  check_offsets(offsets, w.codes.shape[0], detail::fold_rows(a.codes), op);
  if (out.numel() == 0) return;
  cpu::fp8_grouped_gemm(kind, a, w, offsets.ptr<int32_t>(), static_cast<int>(w.codes.shape[0]),
                        out.ptr<float>(), static_cast<float>(beta), cpu::moe_threads(ctx));
}

}  // namespace

void fp8_gemm_forward(Context& ctx, const Fp8Tensor& x, const Fp8Tensor& w, const Tensor& y,
                      double beta) {
  linear(ctx, Fp8GemmKind::forward, x, w, y, beta, "fp8_gemm_forward");
}

void fp8_gemm_dgrad(Context& ctx, const Fp8Tensor& dy, const Fp8Tensor& w, const Tensor& dx,
                    double beta) {
  linear(ctx, Fp8GemmKind::dgrad, dy, w, dx, beta, "fp8_gemm_dgrad");
}

void fp8_gemm_wgrad(Context& ctx, const Fp8Tensor& dy, const Fp8Tensor& x, const Tensor& dw) {
  const char* op = "fp8_gemm_wgrad";
  fp8_check::dense(dy, kCol, op);
  fp8_check::dense(x, kCol, op);
  check_inner(detail::fold_rows(dy.codes), detail::fold_rows(x.codes), op, dy, x);
  check_out(dw, dy.codes.cols(), x.codes.cols(), op);
  if (dw.numel() == 0 || detail::fold_rows(x.codes) == 0) return;
  cpu::fp8_gemm(Fp8GemmKind::wgrad, dy, x, dw.ptr<float>(), 0.0f, cpu::moe_threads(ctx));
}

void fp8_grouped_gemm_forward(Context& ctx, const Fp8Tensor& x, const Fp8Tensor& w,
                              const Tensor& offsets, const Tensor& y, double beta) {
  grouped_linear(ctx, Fp8GemmKind::forward, x, w, offsets, y, beta, "fp8_grouped_gemm_forward");
}

void fp8_grouped_gemm_dgrad(Context& ctx, const Fp8Tensor& dy, const Fp8Tensor& w,
                            const Tensor& offsets, const Tensor& dx, double beta) {
  grouped_linear(ctx, Fp8GemmKind::dgrad, dy, w, offsets, dx, beta, "fp8_grouped_gemm_dgrad");
}

void fp8_grouped_gemm_wgrad(Context& ctx, const Fp8Tensor& dy, const Fp8Tensor& x,
                            const Tensor& offsets, const Tensor& dw) {
  const char* op = "fp8_grouped_gemm_wgrad";
  const int64_t m = detail::fold_rows(x.codes);
  core::check_shape(dw, {-1, dy.codes.cols(), x.codes.cols()}, op);
  core::check_dtype(dw, core::DType::f32, op);
  detail::require_cpu(op, {&dw});
  check_offsets(offsets, dw.shape[0], m, op);
  fp8_check::segments(dy, dw.shape[0], op);
  fp8_check::segments(x, dw.shape[0], op);
  check_inner(detail::fold_rows(dy.codes), m, op, dy, x);
  if (dw.numel() == 0 || m == 0) return;
  cpu::fp8_grouped_gemm(Fp8GemmKind::wgrad, dy, x, offsets.ptr<int32_t>(),
                        static_cast<int>(dw.shape[0]), dw.ptr<float>(), 0.0f,
                        cpu::moe_threads(ctx));
}

}  // namespace kernels
