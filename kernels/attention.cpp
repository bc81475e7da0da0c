// Launchers for causal attention: q, k [B*T, H, Dqk], v, out [B*T, H, Dv], lse [B, H, T].
#include "kernels/cpu/attention.hpp"

#include "kernels/cpu/dispatch.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/ops.hpp"

namespace kernels {

namespace {

cpu::AttnShape check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                               int64_t seq_len, const Tensor& out, const Tensor& lse) {
  core::check_shape(q, {-1, -1, -1}, "attention: q");
  FLOT_CHECK(seq_len > 0 && q.shape[0] % seq_len == 0, "{}: q {} is not whole sequences of {}", op,
             q.shape_str(), seq_len);
  cpu::AttnShape s;
  s.T = seq_len;
  s.B = q.shape[0] / seq_len;
  s.H = q.shape[1];
  s.Dqk = q.shape[2];
  core::check_shape(k, {s.B * s.T, s.H, s.Dqk}, "attention: k");
  core::check_shape(v, {s.B * s.T, s.H, -1}, "attention: v");
  s.Dv = v.shape[2];
  core::check_shape(out, {s.B * s.T, s.H, s.Dv}, "attention: out");
  core::check_shape(lse, {s.B, s.H, s.T}, "attention: lse");
  return s;
}

}  // namespace

void attention_forward(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       int64_t seq_len, double scale, const Tensor& out, const Tensor& lse) {
  const char* op = "attention_forward";
  const bool gpu = detail::on_cuda(op, {&q, &k, &v, &out, &lse});
  core::DType dt = detail::float_dtype(op, {&q, &k, &v, &out, &lse});
  const cpu::AttnShape s = check_attention(op, q, k, v, seq_len, out, lse);
  if (s.B == 0 || s.H == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::attention_forward(ctx, q, k, v, seq_len, scale, out, lse);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_forward<T>(s, q.ptr<T>(), k.ptr<T>(), v.ptr<T>(), static_cast<T>(scale),
                              out.ptr<T>(), lse.ptr<T>());
  });
}

void attention_backward(Context& ctx, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, int64_t seq_len,
                        double scale, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const char* op = "attention_backward";
  const bool gpu = detail::on_cuda(op, {&dout, &q, &k, &v, &out, &lse, &dq, &dk, &dv});
  core::DType dt = detail::float_dtype(op, {&dout, &q, &k, &v, &out, &lse, &dq, &dk, &dv});
  const cpu::AttnShape s = check_attention(op, q, k, v, seq_len, out, lse);
  core::check_shape(dout, {s.B * s.T, s.H, s.Dv}, "attention_backward: dout");
  core::check_shape(dq, {s.B * s.T, s.H, s.Dqk}, "attention_backward: dq");
  core::check_shape(dk, {s.B * s.T, s.H, s.Dqk}, "attention_backward: dk");
  core::check_shape(dv, {s.B * s.T, s.H, s.Dv}, "attention_backward: dv");
  if (s.B == 0 || s.H == 0) return;
  if (gpu) {
    detail::require_f32_on_cuda(op, dt);
    return cuda::attention_backward(ctx, dout, q, k, v, out, lse, seq_len, scale, dq, dk, dv);
  }
  detail::dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_backward<T>(s, dout.ptr<T>(), q.ptr<T>(), k.ptr<T>(), v.ptr<T>(), out.ptr<T>(),
                               lse.ptr<T>(), static_cast<T>(scale), dq.ptr<T>(), dk.ptr<T>(),
                               dv.ptr<T>());
  });
}

}  // namespace kernels
