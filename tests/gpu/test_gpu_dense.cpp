// Dense ops on the GPU against the CPU ops (the oracle) on fresh random inputs of several shapes:
// elementwise, cast, FP32 and BF16 GEMMs (every transpose, K = 0, shapes off every multiple of
// 128), embedding, RMSNorm, RoPE, SwiGLU and AdamW. Thresholds are relative to the largest CPU
// value; each says what differs between the two (summation order, FMA contraction, expf).
#include <cmath>

#include "gpu_testing.hpp"
#include "kernels/bf16_ops.hpp"
#include "optim/adamw.hpp"

using namespace gpu_testing;

TEST_CASE("gpu elementwise: fill, copy, axpy, scale, sum_squares, cast", "[gpu][dense]") {
  Device dev;
  for (int64_t n : {1, 1000, 100003}) {
    std::vector<float> x = random(size_t(n), 1), y = random(size_t(n), 2);
    Tensor dx = dev.upload(x, {n}), dy = dev.upload(y, {n});
    kernels::axpy(0.5, dx, dy);
    kernels::scale(dy, 3.0);
    std::vector<float> want = y;
    kernels::axpy(0.5, view(x, {n}), view(want, {n}));
    kernels::scale(view(want, {n}), 3.0);
    GPU_CHECK_CLOSE("axpy + scale", download<float>(dy), want, 1e-6);
    CHECK(kernels::sum_squares(dx) == Approx(kernels::sum_squares(view(x, {n}))).epsilon(1e-12));
    kernels::fill(dx, 2.5);
    CHECK(download<float>(dx) == std::vector<float>(size_t(n), 2.5f));
    // bf16 cast: bit-exact round to nearest even both ways.
    std::vector<uint16_t> want16(static_cast<size_t>(n)), got16;
    kernels::cast(ctx(), view(y, {n}), view(want16, {n}, DType::bf16));
    Tensor d16 = dev.alloc(DType::bf16, {n});
    kernels::cast(ctx(), dev.upload(y, {n}), d16);
    got16 = download<uint16_t>(d16);
    CHECK(got16 == want16);
  }
}

TEST_CASE("gpu gemm: FP32 and BF16 GEMMs match the CPU for every transpose", "[gpu][gemm]") {
  Device dev;
  struct Shape {
    int64_t m, n, k;
  };
  for (Shape s : {Shape{1, 1, 1}, Shape{37, 53, 29}, Shape{256, 512, 384}, Shape{130, 200, 0}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool bf16 : {false, true}) {
          std::vector<float> A = random(size_t(s.m * s.k), 3), B = random(size_t(s.k * s.n), 4);
          std::vector<float> C = random(size_t(s.m * s.n), 5), want = C;
          const Tensor Ah = ta ? view(A, {s.k, s.m}) : view(A, {s.m, s.k});
          const Tensor Bh = tb ? view(B, {s.n, s.k}) : view(B, {s.k, s.n});
          const Tensor Ad = ta ? dev.upload(A, {s.k, s.m}) : dev.upload(A, {s.m, s.k});
          const Tensor Bd = tb ? dev.upload(B, {s.n, s.k}) : dev.upload(B, {s.k, s.n});
          const Tensor Cd = dev.upload(C, {s.m, s.n});
          if (bf16) {
            kernels::gemm_bf16(ctx(), Ah, ta, Bh, tb, view(want, {s.m, s.n}), 0.5, 0.25);
            kernels::gemm_bf16(ctx(), Ad, ta, Bd, tb, Cd, 0.5, 0.25);
          } else {
            kernels::gemm(ctx(), Ah, ta, Bh, tb, view(want, {s.m, s.n}), 0.5, 0.25);
            kernels::gemm(ctx(), Ad, ta, Bd, tb, Cd, 0.5, 0.25);
          }
          INFO("m " << s.m << " n " << s.n << " k " << s.k << " ta " << ta << " tb " << tb
                    << " bf16 " << bf16);
          // Same exact products, FP32 sums in another order.
          GPU_CHECK_CLOSE("gemm", download<float>(Cd), want, 2e-5);
        }
}

TEST_CASE("gpu embedding: gather and scatter-add, bad tokens reported", "[gpu][dense]") {
  Device dev;
  const int64_t V = 1000, D = 96;
  for (int64_t N : {1, 77, 4096}) {
    std::vector<float> table = random(size_t(V * D), 6), dout = random(size_t(N * D), 7);
    std::vector<int32_t> tokens(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) tokens[i] = int32_t((i * 7919) % 97);  // repeats: atomics
    std::vector<float> out(size_t(N * D)), dtable(size_t(V * D), 0.0f);
    kernels::embedding_forward(ctx(), view(table, {V, D}), view(tokens, {N}), view(out, {N, D}));
    kernels::embedding_backward(ctx(), view(dout, {N, D}), view(tokens, {N}), view(dtable, {V, D}));
    Tensor dt = dev.upload(table, {V, D}), tk = dev.upload(tokens, {N});
    Tensor dout_d = dev.upload(dout, {N, D}), out_d = dev.alloc(DType::f32, {N, D});
    Tensor dtab = dev.zeros(DType::f32, {V, D});
    kernels::embedding_forward(ctx(), dt, tk, out_d);
    kernels::embedding_backward(ctx(), dout_d, tk, dtab);
    CHECK(download<float>(out_d) == out);
    GPU_CHECK_CLOSE("embedding dtable (atomic order)", download<float>(dtab), dtable, 1e-6);
  }
  std::vector<int32_t> bad = {3, 1000};
  Tensor out_d = dev.alloc(DType::f32, {2, D});
  kernels::embedding_forward(ctx(), dev.upload(random(size_t(V * D), 8), {V, D}),
                             dev.upload(bad, {2}), out_d);
  CHECK_THROWS_WITH(runtime().raise_device_errors(),
                    Catch::Contains("token outside the table") && Catch::Contains("1000"));
}

TEST_CASE("gpu rmsnorm, rope and swiglu match the CPU", "[gpu][dense]") {
  Device dev;
  for (int64_t D : {8, 200, 1536}) {
    const int64_t N = 129;
    std::vector<float> x = random(size_t(N * D), 9, 3.0), w = random(size_t(D), 10);
    std::vector<float> dy = random(size_t(N * D), 11);
    std::vector<float> y(x.size()), rstd(static_cast<size_t>(N)), dx(x.size()),
        dw = random(size_t(D), 12);
    std::vector<float> dw0 = dw;
    kernels::rmsnorm_forward(ctx(), view(x, {N, D}), view(w, {D}), 1e-6, view(y, {N, D}),
                             view(rstd, {N}));
    kernels::rmsnorm_backward_input(ctx(), view(dy, {N, D}), view(x, {N, D}), view(w, {D}),
                                    view(rstd, {N}), view(dx, {N, D}));
    kernels::rmsnorm_backward_weight(ctx(), view(dy, {N, D}), view(x, {N, D}), view(rstd, {N}),
                                     view(dw, {D}));
    Tensor xd = dev.upload(x, {N, D}), wd = dev.upload(w, {D}), dyd = dev.upload(dy, {N, D});
    Tensor yd = dev.alloc(DType::f32, {N, D}), rd = dev.alloc(DType::f32, {N});
    Tensor dxd = dev.alloc(DType::f32, {N, D}), dwd = dev.upload(dw0, {D});
    kernels::rmsnorm_forward(ctx(), xd, wd, 1e-6, yd, rd);
    kernels::rmsnorm_backward_input(ctx(), dyd, xd, wd, rd, dxd);
    kernels::rmsnorm_backward_weight(ctx(), dyd, xd, rd, dwd);
    INFO("D " << D);
    GPU_CHECK_CLOSE("rmsnorm y", download<float>(yd), y, 1e-6);
    GPU_CHECK_CLOSE("rmsnorm rstd", download<float>(rd), rstd, 1e-6);
    GPU_CHECK_CLOSE("rmsnorm dx (FMA)", download<float>(dxd), dx, 1e-5);
    GPU_CHECK_CLOSE("rmsnorm dw (column sums in chunks)", download<float>(dwd), dw, 1e-5);
  }
  // RoPE: partial rotary slice inside heads, two sequences, forward then inverse.
  const int64_t T = 37, B = 2, H = 3, Dh = 24;
  for (bool inverse : {false, true}) {
    std::vector<float> x = random(size_t(B * T * H * Dh), 13), want = x;
    kernels::rope(ctx(), view(want, {B * T, H, Dh}), T, 8, 16, 10000.0, inverse);
    Tensor xd = dev.upload(x, {B * T, H, Dh});
    kernels::rope(ctx(), xd, T, 8, 16, 10000.0, inverse);
    GPU_CHECK_CLOSE("rope", download<float>(xd), want, 1e-6);
  }
  for (int64_t F : {1, 300, 1024}) {
    const int64_t N = 65;
    std::vector<float> h = random(size_t(N * 2 * F), 14, 4.0), dy = random(size_t(N * F), 15);
    std::vector<float> y(size_t(N * F)), dh(h.size());
    kernels::swiglu_forward(ctx(), view(h, {N, 2 * F}), view(y, {N, F}));
    kernels::swiglu_backward(ctx(), view(dy, {N, F}), view(h, {N, 2 * F}), view(dh, {N, 2 * F}));
    Tensor hd = dev.upload(h, {N, 2 * F}), yd = dev.alloc(DType::f32, {N, F});
    Tensor dhd = dev.alloc(DType::f32, {N, 2 * F});
    kernels::swiglu_forward(ctx(), hd, yd);
    kernels::swiglu_backward(ctx(), dev.upload(dy, {N, F}), hd, dhd);
    GPU_CHECK_CLOSE("swiglu y (expf)", download<float>(yd), y, 2e-6);
    GPU_CHECK_CLOSE("swiglu dh (expf)", download<float>(dhd), dh, 2e-6);
  }
}

TEST_CASE("gpu adamw: f32 and bf16 moments follow the CPU step", "[gpu][optim]") {
  Device dev;
  const int64_t n = 10007;
  optim::AdamWHyper h;
  for (bool bf16 : {false, true}) {
    std::vector<float> p = random(size_t(n), 16), g = random(size_t(n), 17);
    std::vector<float> m32(size_t(n), 0.0f), v32(size_t(n), 0.0f);
    std::vector<uint16_t> m16(size_t(n), 0), v16(size_t(n), 0);
    const DType md = bf16 ? DType::bf16 : DType::f32;
    Tensor pd = dev.upload(p, {n}), gd = dev.upload(g, {n});
    Tensor md_t = dev.zeros(md, {n}), vd_t = dev.zeros(md, {n});
    for (int64_t step = 1; step <= 3; ++step) {
      if (bf16) {
        optim::adamw_step(view(p, {n}), view(g, {n}), view(m16, {n}, DType::bf16),
                          view(v16, {n}, DType::bf16), h, step, 1e-3, 0.5, true);
      } else {
        optim::adamw_step(view(p, {n}), view(g, {n}), view(m32, {n}), view(v32, {n}), h, step, 1e-3,
                          0.5, true);
      }
      optim::adamw_step(pd, gd, md_t, vd_t, h, step, 1e-3, 0.5, true);
    }
    INFO("bf16 moments " << bf16);
    // FMA contraction on the GPU moves the moments by an ulp; bf16 rounding can then differ by
    // one bf16 ulp in rare elements, which the update scales by lr.
    GPU_CHECK_CLOSE("adamw params", download<float>(pd), p, bf16 ? 1e-4 : 1e-6);
  }
}
