// Launchers of the routing plan, permute and combine (kernels/moe_ops.hpp). Activations may be
// views of any rank; they are read as [rows, last dim]. Index tensors are range-checked on every
// call (N*k comparisons, negligible next to the D-wide row copies) so that a bad plan throws
// instead of writing out of bounds.
#include <cstdint>
#include <limits>

#include "kernels/cpu/moe_check.hpp"
#include "kernels/cpu/moe_cpu.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/moe_ops.hpp"

namespace kernels {

void moe_plan(Context& ctx, const Tensor& expert_idx, int num_experts, const Tensor& offsets,
              const Tensor& src, const Tensor& pos) {
  core::check_shape(expert_idx, {-1, -1}, "plan expert_idx");
  const int64_t n = expert_idx.shape[0], k = expert_idx.shape[1], pairs = n * k;
  FLOT_CHECK(num_experts >= 1, "plan num_experts = {}", num_experts);
  FLOT_CHECK(pairs <= std::numeric_limits<int32_t>::max(), "plan: {} tokens x {} slots overflow i32",
             n, k);
  core::check_shape(offsets, {num_experts + 1}, "plan offsets");
  core::check_shape(src, {pairs}, "plan src");
  core::check_shape(pos, {pairs}, "plan pos");
  for (const Tensor* t : {&expert_idx, &offsets, &src, &pos})
    core::check_dtype(*t, core::DType::i32, "plan index tensor");
  if (moe_check::on_cuda({{&expert_idx, "plan expert_idx"},
                          {&offsets, "plan offsets"},
                          {&src, "plan src"},
                          {&pos, "plan pos"}}))
    return cuda::moe_plan(ctx, expert_idx, num_experts, offsets, src, pos);
  // No early return for N = 0: the offsets (all 0) are still written.
  if (pairs > 0) moe_check::index_range(expert_idx, num_experts, "plan expert_idx");
  cpu::moe_plan(n, static_cast<int>(k), pairs > 0 ? expert_idx.ptr<int32_t>() : nullptr,
                num_experts, offsets.ptr<int32_t>(), src.ptr<int32_t>(), pos.ptr<int32_t>());
}

void moe_permute(Context& ctx, const Tensor& x, const Tensor& src, int top_k, const Tensor& xs) {
  FLOT_CHECK(top_k >= 1, "permute top_k = {}", top_k);
  const int64_t n = x.rows(), d = x.cols(), rows = n * top_k;
  core::check_shape(src, {rows}, "permute src");
  FLOT_CHECK(xs.rows() == rows && xs.cols() == d, "permute xs has shape {}, expected [{}, {}]",
             xs.shape_str(), rows, d);
  core::check_dtype(xs, x.dtype, "permute xs");
  core::check_dtype(src, core::DType::i32, "permute src");
  const bool gpu =
      moe_check::on_cuda({{&x, "permute x"}, {&src, "permute src"}, {&xs, "permute xs"}});
  if (rows == 0 || d == 0) return;
  if (gpu) {
    moe_check::f32_on_cuda(x, "permute x");
    return cuda::moe_permute(ctx, x, src, top_k, xs);
  }
  moe_check::index_range(src, rows, "permute src");
  // A row is moved whole, so any element type is a run of bytes here.
  cpu::moe_permute(rows, d * static_cast<int64_t>(core::dtype_size(x.dtype)),
                   static_cast<const std::byte*>(x.data), src.ptr<int32_t>(), top_k,
                   static_cast<std::byte*>(xs.data), cpu::moe_threads(ctx));
}

void moe_permute_backward(Context& ctx, const Tensor& dxs, const Tensor& pos, int top_k,
                          const Tensor& dx) {
  FLOT_CHECK(top_k >= 1, "permute_backward top_k = {}", top_k);
  const int64_t n = dx.rows(), d = dx.cols(), rows = n * top_k;
  core::check_shape(pos, {rows}, "permute_backward pos");
  FLOT_CHECK(dxs.rows() == rows && dxs.cols() == d,
             "permute_backward dxs has shape {}, expected [{}, {}]", dxs.shape_str(), rows, d);
  moe_check::float_dtype(dx, "permute_backward dx");
  core::check_dtype(dxs, dx.dtype, "permute_backward dxs");
  core::check_dtype(pos, core::DType::i32, "permute_backward pos");
  const bool gpu = moe_check::on_cuda({{&dxs, "permute_backward dxs"},
                                       {&pos, "permute_backward pos"},
                                       {&dx, "permute_backward dx"}});
  if (rows == 0 || d == 0) return;
  if (gpu) {
    moe_check::f32_on_cuda(dx, "permute_backward dx");
    return cuda::moe_permute_backward(ctx, dxs, pos, top_k, dx);
  }
  moe_check::index_range(pos, rows, "permute_backward pos");
  moe_check::dispatch_float(dx.dtype, [&](auto tag) {
    using T = decltype(tag);
    cpu::moe_permute_backward<T>(n, d, dxs.ptr<T>(), pos.ptr<int32_t>(), top_k, dx.ptr<T>(),
                                 cpu::moe_threads(ctx));
  });
}

namespace {

// Checks the operands of combine / its backward; returns {N, k, D} and whether they are on the GPU.
struct CombineDims {
  int64_t n, k, d;
  bool gpu;
};
CombineDims check_combine(const char* op, const Tensor& y, const Tensor& ys, const Tensor& weights,
                          const Tensor& pos) {
  core::check_shape(weights, {-1, -1}, op);
  const int64_t n = weights.shape[0], k = weights.shape[1], d = y.cols();
  FLOT_CHECK(y.rows() == n, "{}: y / dy has {} rows, weights has {} tokens", op, y.rows(), n);
  FLOT_CHECK(ys.rows() == n * k && ys.cols() == d, "{}: ys has shape {}, expected [{}, {}]", op,
             ys.shape_str(), n * k, d);
  core::check_shape(pos, {n * k}, op);
  moe_check::float_dtype(y, op);
  core::check_dtype(ys, y.dtype, op);
  core::check_dtype(weights, y.dtype, op);
  core::check_dtype(pos, core::DType::i32, op);
  const bool gpu = moe_check::on_cuda({{&y, op}, {&ys, op}, {&weights, op}, {&pos, op}});
  if (gpu) moe_check::f32_on_cuda(y, op);
  return {n, k, d, gpu};
}

}  // namespace

void moe_combine(Context& ctx, const Tensor& ys, const Tensor& weights, const Tensor& pos,
                 const Tensor& y) {
  const auto [n, k, d, gpu] = check_combine("combine", y, ys, weights, pos);
  if (n * k == 0 || d == 0) return;
  if (gpu) return cuda::moe_combine(ctx, ys, weights, pos, y);
  moe_check::index_range(pos, n * k, "combine pos");
  moe_check::dispatch_float(y.dtype, [&](auto tag) {
    using T = decltype(tag);
    cpu::moe_combine<T>(n, static_cast<int>(k), d, ys.ptr<T>(), weights.ptr<T>(),
                        pos.ptr<int32_t>(), y.ptr<T>(), cpu::moe_threads(ctx));
  });
}

void moe_combine_backward(Context& ctx, const Tensor& dy, const Tensor& ys, const Tensor& weights,
                          const Tensor& pos, const Tensor& dys, const Tensor& dweights) {
  const auto [n, k, d, gpu] = check_combine("combine_backward", dy, ys, weights, pos);
  FLOT_CHECK(dys.rows() == n * k && dys.cols() == d,
             "combine_backward dys has shape {}, expected [{}, {}]", dys.shape_str(), n * k, d);
  core::check_shape(dweights, {n, k}, "combine_backward dweights");
  core::check_dtype(dys, dy.dtype, "combine_backward dys");
  core::check_dtype(dweights, dy.dtype, "combine_backward dweights");
  FLOT_CHECK(moe_check::on_cuda({{&dy, "combine_backward dy"},
                                 {&dys, "combine_backward dys"},
                                 {&dweights, "combine_backward dweights"}}) == gpu,
             "combine_backward: outputs and inputs on different devices");
  if (n * k == 0) return;
  if (gpu) return cuda::moe_combine_backward(ctx, dy, ys, weights, pos, dys, dweights);
  moe_check::index_range(pos, n * k, "combine_backward pos");
  moe_check::dispatch_float(dy.dtype, [&](auto tag) {
    using T = decltype(tag);
    // D = 0 still writes dweights (all 0) through the same loop.
    cpu::moe_combine_backward<T>(n, static_cast<int>(k), d, dy.ptr<T>(), ys.ptr<T>(),
                                 weights.ptr<T>(), pos.ptr<int32_t>(), dys.ptr<T>(),
                                 dweights.ptr<T>(), cpu::moe_threads(ctx));
  });
}

}  // namespace kernels
