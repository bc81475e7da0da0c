// Causal attention and the fused head + cross-entropy on the GPU against the CPU ops: head dims of
// DeepSeek-V3's MLA (192 / 128) and small odd ones, sequence lengths off the 32-row tiles, a
// vocabulary larger than one chunk with ignored targets.
#include <cmath>

#include "gpu_testing.hpp"

using namespace gpu_testing;

TEST_CASE("gpu attention forward and backward match the CPU", "[gpu][attention]") {
  struct Shape {
    int64_t B, T, H, Dqk, Dv;
  };
  for (Shape s : {Shape{2, 1, 1, 8, 8}, Shape{1, 100, 3, 48, 32}, Shape{2, 257, 2, 192, 128},
                  Shape{1, 64, 1, 256, 256}}) {
    Device dev;
    const int64_t rows = s.B * s.T;
    const double scale = 1.0 / std::sqrt(double(s.Dqk));
    std::vector<float> q = random(size_t(rows * s.H * s.Dqk), 20, 2.0);
    std::vector<float> k = random(q.size(), 21, 2.0), v = random(size_t(rows * s.H * s.Dv), 22);
    std::vector<float> dout = random(v.size(), 23);
    std::vector<float> out(v.size()), lse(size_t(s.B * s.H * s.T)), dq(q.size()), dk(q.size()),
        dv(v.size());
    kernels::attention_forward(ctx(), view(q, {rows, s.H, s.Dqk}), view(k, {rows, s.H, s.Dqk}),
                               view(v, {rows, s.H, s.Dv}), s.T, scale, view(out, {rows, s.H, s.Dv}),
                               view(lse, {s.B, s.H, s.T}));
    kernels::attention_backward(ctx(), view(dout, {rows, s.H, s.Dv}), view(q, {rows, s.H, s.Dqk}),
                                view(k, {rows, s.H, s.Dqk}), view(v, {rows, s.H, s.Dv}),
                                view(out, {rows, s.H, s.Dv}), view(lse, {s.B, s.H, s.T}), s.T,
                                scale, view(dq, {rows, s.H, s.Dqk}), view(dk, {rows, s.H, s.Dqk}),
                                view(dv, {rows, s.H, s.Dv}));
    Tensor qd = dev.upload(q, {rows, s.H, s.Dqk}), kd = dev.upload(k, {rows, s.H, s.Dqk});
    Tensor vd = dev.upload(v, {rows, s.H, s.Dv}), od = dev.alloc(DType::f32, {rows, s.H, s.Dv});
    Tensor ld = dev.alloc(DType::f32, {s.B, s.H, s.T});
    kernels::attention_forward(ctx(), qd, kd, vd, s.T, scale, od, ld);
    Tensor dqd = dev.alloc(DType::f32, {rows, s.H, s.Dqk}),
           dkd = dev.alloc(DType::f32, {rows, s.H, s.Dqk});
    Tensor dvd = dev.alloc(DType::f32, {rows, s.H, s.Dv});
    kernels::attention_backward(ctx(), dev.upload(dout, {rows, s.H, s.Dv}), qd, kd, vd, od, ld, s.T,
                                scale, dqd, dkd, dvd);
    INFO("B " << s.B << " T " << s.T << " H " << s.H << " Dqk " << s.Dqk << " Dv " << s.Dv);
    // Online softmax (running max and rescaling) against a whole-row softmax, FP32 throughout.
    GPU_CHECK_CLOSE("attention out", download<float>(od), out, 1e-5);
    GPU_CHECK_CLOSE("attention lse", download<float>(ld), lse, 1e-5);
    GPU_CHECK_CLOSE("attention dq", download<float>(dqd), dq, 1e-4);
    GPU_CHECK_CLOSE("attention dk", download<float>(dkd), dk, 1e-4);
    GPU_CHECK_CLOSE("attention dv", download<float>(dvd), dv, 1e-4);
  }
}

TEST_CASE("gpu head + cross-entropy matches the CPU, chunked vocabulary, ignored targets",
          "[gpu][head]") {
  for (int64_t V : {50, 9000}) {
    Device dev;
    const int64_t N = 300, D = 64;
    std::vector<float> x = random(size_t(N * D), 30), W = random(size_t(V * D), 31, 0.5);
    std::vector<int32_t> targets(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) targets[i] = i % 11 == 0 ? -1 : int32_t((i * 131) % V);
    std::vector<float> losses(static_cast<size_t>(N)), lse(static_cast<size_t>(N)), dx(x.size()),
        dW(W.size(), 0.0f);
    kernels::head_ce_forward(ctx(), view(x, {N, D}), view(W, {V, D}), view(targets, {N}),
                             view(losses, {N}), view(lse, {N}));
    kernels::head_ce_backward(ctx(), view(x, {N, D}), view(W, {V, D}), view(targets, {N}),
                              view(lse, {N}), 0.01, view(dx, {N, D}), view(dW, {V, D}));
    Tensor xd = dev.upload(x, {N, D}), Wd = dev.upload(W, {V, D}), td = dev.upload(targets, {N});
    Tensor lossd = dev.alloc(DType::f32, {N}), lsed = dev.alloc(DType::f32, {N});
    Tensor dxd = dev.alloc(DType::f32, {N, D}), dWd = dev.zeros(DType::f32, {V, D});
    kernels::head_ce_forward(ctx(), xd, Wd, td, lossd, lsed);
    kernels::head_ce_backward(ctx(), xd, Wd, td, lsed, 0.01, dxd, dWd);
    INFO("V " << V);
    GPU_CHECK_CLOSE("head_ce losses", download<float>(lossd), losses, 1e-5);
    GPU_CHECK_CLOSE("head_ce lse", download<float>(lsed), lse, 1e-6);
    GPU_CHECK_CLOSE("head_ce dx", download<float>(dxd), dx, 1e-5);
    GPU_CHECK_CLOSE("head_ce dW", download<float>(dWd), dW, 1e-5);
  }
}
