// Launcher for RoPE: x [B*T, H, Dh], the rotated slice inside every head, whole sequences.
#include "kernels/cpu/rope.hpp"

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

void rope(Context& ctx, const Tensor& x, int64_t seq_len, int64_t offset, int64_t rope_dim,
          double theta, bool inverse) {
  const char* op = "rope";
  const bool gpu = detail::on_cuda(op, {&x});
  core::check_shape(x, {-1, -1, -1}, "rope: x");
  const int64_t rows = x.shape[0], H = x.shape[1], Dh = x.shape[2];
  FLOT_CHECK(rope_dim >= 0 && rope_dim % 2 == 0 && offset >= 0 && offset + rope_dim <= Dh,
             "rope: dims [{}, {}) (rope_dim must be even) outside heads of x {}", offset,
             offset + rope_dim, x.shape_str());
  FLOT_CHECK(seq_len > 0 && rows % seq_len == 0, "rope: x {} is not whole sequences of {}",
             x.shape_str(), seq_len);
  FLOT_CHECK(theta > 0, "rope: theta {} must be positive", theta);
  if (rows == 0 || H == 0 || rope_dim == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, x.dtype);
    return cuda::rope(ctx, x, seq_len, offset, rope_dim, theta, inverse);
  }
  detail::dispatch_float(x.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::rope<T>(x.ptr<T>(), rows, H, Dh, seq_len, offset, rope_dim, theta, inverse);
  });
}

}  // namespace kernels
