// Launchers of the FP8 wire rows (kernels/fp8_ops.hpp): a row_1x128 matrix packed with its scales
// into byte rows, and back.
#include "kernels/cpu/dispatch.hpp"
#include "kernels/cpu/fp8.hpp"
#include "kernels/cpu/fp8_check.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/fp8_ops.hpp"

namespace kernels {

namespace {

// q is a row_1x128 matrix and packed its u8 [rows, fp8_row_bytes(cols)] form.
void check_rows(const Fp8Tensor& q, const Tensor& packed, const char* what) {
  fp8_check::dense(q, Fp8Tiling::row_1x128, what);
  detail::require_cpu(what, {&packed});
  core::check_dtype(packed, core::DType::u8, what);
  const int64_t rows = detail::fold_rows(q.codes), cols = q.codes.cols();
  FLOT_CHECK(packed.ndim == 2 && packed.shape[0] == rows && packed.shape[1] == fp8_row_bytes(cols),
             "{}: packed rows {} for codes {} (expected [{}, {}])", what, packed.shape_str(),
             q.codes.shape_str(), rows, fp8_row_bytes(cols));
}

}  // namespace

int64_t fp8_row_bytes(int64_t cols) {
  return cols + 4 * fp8_check::tiles(cols);
}

void fp8_pack_rows(Context& ctx, const Fp8Tensor& q, const Tensor& packed) {
  check_rows(q, packed, "fp8_pack_rows");
  if (packed.numel() == 0) return;
  cpu::fp8_pack_rows(fp8_check::codes(q), q.scales.ptr<float>(), packed.shape[0], q.codes.cols(),
                     q.scales.cols(), packed.ptr<uint8_t>(), cpu::moe_threads(ctx));
}

void fp8_unpack_rows(Context& ctx, const Tensor& packed, const Fp8Tensor& q) {
  check_rows(q, packed, "fp8_unpack_rows");
  if (packed.numel() == 0) return;
  cpu::fp8_unpack_rows(packed.ptr<uint8_t>(), packed.shape[0], q.codes.cols(), q.scales.cols(),
                       fp8_check::codes(q), q.scales.ptr<float>(), cpu::moe_threads(ctx));
}

}  // namespace kernels
