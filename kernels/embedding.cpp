// Launchers for the token embedding: shape checks and a token range check before any lookup
// (on the GPU the kernel checks the range and records a bad token in the device error word).
#include "kernels/cpu/embedding.hpp"

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

namespace {

// A token outside the table is bad data or a vocab-size mismatch; it would read or write
// arbitrary memory, so it is rejected with its position.
void check_tokens(const char* op, const Tensor& tokens, int64_t V) {
  const int32_t* t = tokens.ptr<int32_t>();
  const int64_t N = tokens.numel();
  for (int64_t n = 0; n < N; ++n)
    FLOT_CHECK(t[n] >= 0 && t[n] < V, "{}: token {} at position {} outside the table of {} rows",
               op, t[n], n, V);
}

}  // namespace

void embedding_forward(Context& ctx, const Tensor& table, const Tensor& tokens, const Tensor& out) {
  const char* op = "embedding_forward";
  const bool gpu = detail::on_cuda(op, {&table, &tokens, &out});
  core::DType dt = detail::float_dtype(op, {&table, &out});
  core::check_dtype(tokens, core::DType::i32, "embedding_forward: tokens");
  core::check_shape(table, {-1, -1}, "embedding_forward: table");
  const int64_t V = table.shape[0], D = table.shape[1];
  core::check_shape(tokens, {-1}, "embedding_forward: tokens");
  const int64_t N = tokens.shape[0];
  core::check_shape(out, {N, D}, "embedding_forward: out");
  if (N == 0 || D == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::embedding_forward(ctx, table, tokens, out);
  }
  check_tokens(op, tokens, V);
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_forward<T>(table.ptr<T>(), tokens.ptr<int32_t>(), N, D, out.ptr<T>());
  });
}

void embedding_backward(Context& ctx, const Tensor& dout, const Tensor& tokens,
                        const Tensor& dtable) {
  const char* op = "embedding_backward";
  const bool gpu = detail::on_cuda(op, {&dout, &tokens, &dtable});
  core::DType dt = detail::float_dtype(op, {&dout, &dtable});
  core::check_dtype(tokens, core::DType::i32, "embedding_backward: tokens");
  core::check_shape(dtable, {-1, -1}, "embedding_backward: dtable");
  const int64_t V = dtable.shape[0], D = dtable.shape[1];
  core::check_shape(tokens, {-1}, "embedding_backward: tokens");
  const int64_t N = tokens.shape[0];
  core::check_shape(dout, {N, D}, "embedding_backward: dout");
  if (N == 0 || D == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::embedding_backward(ctx, dout, tokens, dtable);
  }
  check_tokens(op, tokens, V);
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_backward<T>(dout.ptr<T>(), tokens.ptr<int32_t>(), N, D, dtable.ptr<T>());
  });
}

}  // namespace kernels
