// Tests of causal attention: forward against a naive softmax in double (f64 and f32), backward by
// float64 finite differences, on shapes that exercise one and several query tiles and both the
// head-parallel and the GEMM-parallel backward.
#include <cmath>
#include <limits>
#include <vector>

#include "common/gradcheck.hpp"
#include "kernels/cpu/attention.hpp"
#include "kernels/ops.hpp"

using core::Tensor;

namespace {

struct Shape {
  int B, T, H, Dqk, Dv;
};

// out [B*T, H, Dv] and lse [B, H, T] of causal softmax(scale q k^T) v, in double.
template <class T>
void naive_attention(const Shape& s, const std::vector<T>& q, const std::vector<T>& k,
                     const std::vector<T>& v, double scale, std::vector<double>& out,
                     std::vector<double>& lse) {
  out.assign(size_t(s.B) * s.T * s.H * s.Dv, 0.0);
  lse.assign(size_t(s.B) * s.H * s.T, 0.0);
  std::vector<double> p(s.T);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.T; ++i) {
        const size_t qi = ((size_t(b) * s.T + i) * s.H + h) * s.Dqk;
        double m = -std::numeric_limits<double>::infinity();
        for (int j = 0; j <= i; ++j) {
          const size_t kj = ((size_t(b) * s.T + j) * s.H + h) * s.Dqk;
          double dot = 0;
          for (int d = 0; d < s.Dqk; ++d) dot += double(q[qi + d]) * double(k[kj + d]);
          p[j] = scale * dot;
          m = std::max(m, p[j]);
        }
        double sum = 0;
        for (int j = 0; j <= i; ++j) sum += std::exp(p[j] - m);
        lse[(size_t(b) * s.H + h) * s.T + i] = m + std::log(sum);
        const size_t oi = ((size_t(b) * s.T + i) * s.H + h) * s.Dv;
        for (int j = 0; j <= i; ++j) {
          const double w = std::exp(p[j] - m) / sum;
          const size_t vj = ((size_t(b) * s.T + j) * s.H + h) * s.Dv;
          for (int d = 0; d < s.Dv; ++d) out[oi + d] += w * double(v[vj + d]);
        }
      }
}

template <class T>
void check_forward(const Shape& s, double tol) {
  kernels::Context ctx;
  const size_t nq = size_t(s.B) * s.T * s.H * s.Dqk, nv = size_t(s.B) * s.T * s.H * s.Dv;
  auto q = testing::random_vector<T>(nq, 31, 2.0), k = testing::random_vector<T>(nq, 32, 2.0);
  auto v = testing::random_vector<T>(nv, 33);
  std::vector<T> out(nv), lse(size_t(s.B) * s.H * s.T);
  const double scale = 1.0 / std::sqrt(double(s.Dqk));
  kernels::attention_forward(ctx, Tensor::of(q.data(), {s.B * s.T, s.H, s.Dqk}),
                             Tensor::of(k.data(), {s.B * s.T, s.H, s.Dqk}),
                             Tensor::of(v.data(), {s.B * s.T, s.H, s.Dv}), s.T, scale,
                             Tensor::of(out.data(), {s.B * s.T, s.H, s.Dv}),
                             Tensor::of(lse.data(), {s.B, s.H, s.T}));
  std::vector<double> want_out, want_lse;
  naive_attention(s, q, k, v, scale, want_out, want_lse);
  double worst_out = 0, worst_lse = 0;
  for (size_t i = 0; i < nv; ++i)
    worst_out = std::max(worst_out,
                         std::fabs(out[i] - want_out[i]) / std::max(1.0, std::fabs(want_out[i])));
  for (size_t i = 0; i < lse.size(); ++i)
    worst_lse = std::max(worst_lse,
                         std::fabs(lse[i] - want_lse[i]) / std::max(1.0, std::fabs(want_lse[i])));
  INFO("B " << s.B << " T " << s.T << " H " << s.H << " Dqk " << s.Dqk << " Dv " << s.Dv);
  CHECK(worst_out <= tol);
  CHECK(worst_lse <= tol);
}

// Finite differences of L = sum(r * out) for q, k and v against attention_backward.
void check_backward(const Shape& s) {
  kernels::Context ctx;
  const size_t nq = size_t(s.B) * s.T * s.H * s.Dqk, nv = size_t(s.B) * s.T * s.H * s.Dv;
  auto q = testing::random_vector<double>(nq, 41, 1.5),
       k = testing::random_vector<double>(nq, 42, 1.5);
  auto v = testing::random_vector<double>(nv, 43), r = testing::random_vector<double>(nv, 44);
  std::vector<double> out(nv), lse(size_t(s.B) * s.H * s.T);
  const double scale = 0.7;
  auto tq = Tensor::of(q.data(), {s.B * s.T, s.H, s.Dqk});
  auto tk = Tensor::of(k.data(), {s.B * s.T, s.H, s.Dqk});
  auto tv = Tensor::of(v.data(), {s.B * s.T, s.H, s.Dv});
  auto tout = Tensor::of(out.data(), {s.B * s.T, s.H, s.Dv});
  auto tlse = Tensor::of(lse.data(), {s.B, s.H, s.T});
  auto loss = [&] {
    kernels::attention_forward(ctx, tq, tk, tv, s.T, scale, tout, tlse);
    return testing::dot(r, out);
  };
  loss();
  // The gradients are written, so stale NaN in them must not survive.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> dq(nq, nan), dk(nq, nan), dv(nv, nan);
  kernels::attention_backward(ctx, Tensor::of(r.data(), {s.B * s.T, s.H, s.Dv}), tq, tk, tv, tout,
                              tlse, s.T, scale, Tensor::of(dq.data(), {s.B * s.T, s.H, s.Dqk}),
                              Tensor::of(dk.data(), {s.B * s.T, s.H, s.Dqk}),
                              Tensor::of(dv.data(), {s.B * s.T, s.H, s.Dv}));
  INFO("B " << s.B << " T " << s.T << " H " << s.H);
  testing::check_gradient("dq", q, dq, loss);
  testing::check_gradient("dk", k, dk, loss);
  testing::check_gradient("dv", v, dv, loss);
}

}  // namespace

TEST_CASE("attention forward matches naive causal softmax", "[ops][attention]") {
  kernels::Context ctx;
  ctx.threads = 2;
  core::apply_threads(ctx);
  check_forward<double>({2, 5, 2, 6, 4}, 1e-12);
  // Three query tiles, the last one partial; 1 head vs 6 heads.
  const int T = int(2 * kernels::cpu::kAttnTile + 44);
  check_forward<double>({1, T, 1, 8, 5}, 1e-12);
  check_forward<double>({2, T, 3, 8, 5}, 1e-12);
  check_forward<float>({2, T, 3, 48, 32}, 1e-5);
  check_forward<float>({1, 1, 1, 4, 4}, 1e-6);
}

TEST_CASE("attention backward matches finite differences", "[ops][attention]") {
  kernels::Context ctx;
  ctx.threads = 2;
  core::apply_threads(ctx);
  check_backward({2, 5, 2, 6, 4});
  // Several tiles: one head (the GEMM-parallel path) and two heads (one head per thread).
  const int T = int(kernels::cpu::kAttnTile + 20);
  check_backward({1, T, 1, 4, 3});
  check_backward({2, T, 1, 4, 3});
}

TEST_CASE("attention rejects inconsistent shapes", "[ops][attention]") {
  kernels::Context ctx;
  std::vector<double> q(2 * 5 * 2 * 6), v(2 * 5 * 2 * 4), lse(2 * 2 * 5), bad(200);
  auto tq = Tensor::of(q.data(), {10, 2, 6});
  auto tv = Tensor::of(v.data(), {10, 2, 4});
  auto tlse = Tensor::of(lse.data(), {2, 2, 5});
  std::vector<double> out(v.size());
  auto tout = Tensor::of(out.data(), {10, 2, 4});
  CHECK_NOTHROW(kernels::attention_forward(ctx, tq, tq, tv, 5, 1.0, tout, tlse));
  // seq_len that does not divide the rows, a k with other heads, an lse of the wrong length.
  CHECK_THROWS_AS(kernels::attention_forward(ctx, tq, tq, tv, 3, 1.0, tout, tlse),
                  core::InternalError);
  CHECK_THROWS_AS(kernels::attention_forward(ctx, tq, Tensor::of(bad.data(), {10, 1, 6}), tv, 5,
                                             1.0, tout, tlse),
                  core::InternalError);
  CHECK_THROWS_AS(
      kernels::attention_forward(ctx, tq, tq, tv, 5, 1.0, tout, Tensor::of(bad.data(), {2, 2, 4})),
      core::InternalError);
  CHECK_THROWS_AS(kernels::attention_backward(ctx, tout, tq, tq, tv, tout, tlse, 5, 1.0, tq, tq,
                                              Tensor::of(bad.data(), {10, 2, 3})),
                  core::InternalError);
}
