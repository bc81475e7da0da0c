// MoE ops on the GPU against the CPU: the gate (group-limited top-k, normalization, backward), the
// balance loss, the routing plan (exactly: a stable counting sort has one answer), permute /
// combine and their backward passes, and the grouped GEMMs over experts with empty experts and
// segments off the 64-row tiles.
#include "gpu_testing.hpp"
#include "kernels/bf16_ops.hpp"
#include "kernels/moe_ops.hpp"

using namespace gpu_testing;

namespace {

std::vector<int32_t> ragged_offsets() {
  return {0, 0, 130, 130, 257, 300};
}  // 5 experts, 2 empty

}  // namespace

TEST_CASE("gpu gate forward and backward match the CPU", "[gpu][moe]") {
  struct Case {
    kernels::GateShape g;
    int64_t n;
  };
  const Case cases[] = {
      {{32, 4, 4, 2, 2.5}, 333}, {{256, 8, 8, 4, 2.5}, 129}, {{8, 2, 1, 1, 1.0}, 1}};
  for (const Case& c : cases) {
    Device dev;
    const int64_t E = c.g.num_experts, k = c.g.top_k, n = c.n;
    std::vector<float> logits = random(size_t(n * E), 40, 4.0), bias = random(size_t(E), 41, 0.1);
    std::vector<float> scores(logits.size()), weights(size_t(n * k)), dl(logits.size());
    std::vector<int32_t> idx(size_t(n * k));
    std::vector<float> dw = random(size_t(n * k), 42), extra = random(logits.size(), 43);
    kernels::gate_forward(ctx(), c.g, view(logits, {n, E}), view(bias, {E}), view(scores, {n, E}),
                          view(idx, {n, k}), view(weights, {n, k}));
    kernels::gate_backward(ctx(), c.g, view(dw, {n, k}), view(scores, {n, E}), view(idx, {n, k}),
                           view(extra, {n, E}), view(dl, {n, E}));
    Tensor ld = dev.upload(logits, {n, E}), sd = dev.alloc(DType::f32, {n, E});
    Tensor id = dev.alloc(DType::i32, {n, k}), wd = dev.alloc(DType::f32, {n, k});
    Tensor dld = dev.alloc(DType::f32, {n, E});
    kernels::gate_forward(ctx(), c.g, ld, dev.upload(bias, {E}), sd, id, wd);
    kernels::gate_backward(ctx(), c.g, dev.upload(dw, {n, k}), sd, id, dev.upload(extra, {n, E}),
                           dld);
    INFO("E " << E << " k " << k << " groups " << c.g.num_groups);
    // expf against std::exp moves scores by an ulp; random scores do not tie that closely.
    CHECK(download<int32_t>(id) == idx);
    GPU_CHECK_CLOSE("gate scores", download<float>(sd), scores, 1e-6);
    GPU_CHECK_CLOSE("gate weights", download<float>(wd), weights, 1e-5);
    GPU_CHECK_CLOSE("gate dlogits", download<float>(dld), dl, 1e-5);
  }
}

TEST_CASE("gpu balance loss and its gradient match the CPU", "[gpu][moe]") {
  Device dev;
  const int64_t E = 16, seg = 64, n = 4 * seg;
  std::vector<float> scores = random(size_t(n * E), 44);
  for (float& s : scores) s = 0.5f + 0.5f * s;
  std::vector<float> ds = random(scores.size(), 45), want = ds;
  for (int64_t segment : {seg, n}) {
    const double cpu = kernels::balance_loss_forward(ctx(), view(scores, {n, E}), 4, segment, 0.01);
    Tensor sd = dev.upload(scores, {n, E});
    const double gpu = kernels::balance_loss_forward(ctx(), sd, 4, segment, 0.01);
    CHECK(gpu == Approx(cpu).epsilon(1e-9));
    kernels::balance_loss_backward(ctx(), view(scores, {n, E}), 4, segment, 0.01, 2.0,
                                   view(want, {n, E}));
    Tensor dsd = dev.upload(ds, {n, E});
    kernels::balance_loss_backward(ctx(), sd, 4, segment, 0.01, 2.0, dsd);
    std::vector<float> base = ds;
    ds = download<float>(dsd);
    GPU_CHECK_CLOSE("balance dscores", ds, want, 1e-6);
    ds = base;
    want = base;
  }
}

TEST_CASE("gpu routing plan is the CPU's stable counting sort; permute and combine match",
          "[gpu][moe]") {
  for (int64_t n : {1, 100, 3000}) {
    Device dev;
    const int E = 12, k = 3;
    const int64_t D = 72, pairs = n * k;
    std::vector<int32_t> idx(static_cast<size_t>(pairs));
    // Experts 0 and 5 never chosen: empty segments.
    for (int64_t p = 0; p < pairs; ++p) {
      const int32_t e = int32_t(1 + (p * 7 + p / 5) % 11);
      idx[p] = e == 5 ? 6 : e;
    }
    std::vector<int32_t> off(E + 1), src(static_cast<size_t>(pairs)),
        pos(static_cast<size_t>(pairs));
    kernels::moe_plan(ctx(), view(idx, {n, k}), E, view(off, {E + 1}), view(src, {pairs}),
                      view(pos, {pairs}));
    Tensor idd = dev.upload(idx, {n, k}), offd = dev.alloc(DType::i32, {E + 1});
    Tensor srcd = dev.alloc(DType::i32, {pairs}), posd = dev.alloc(DType::i32, {pairs});
    kernels::moe_plan(ctx(), idd, E, offd, srcd, posd);
    INFO("tokens " << n);
    CHECK(download<int32_t>(offd) == off);
    CHECK(download<int32_t>(srcd) == src);
    CHECK(download<int32_t>(posd) == pos);

    std::vector<float> x = random(size_t(n * D), 46), w = random(size_t(pairs), 47);
    std::vector<float> xs(size_t(pairs * D)), y = random(size_t(n * D), 48),
                                              dxs = random(xs.size(), 49);
    std::vector<float> dx = random(x.size(), 50), dy = random(x.size(), 51);
    std::vector<float> dys(xs.size()), dws(static_cast<size_t>(pairs));
    const std::vector<float> y0 = y, dx0 = dx;
    kernels::moe_permute(ctx(), view(x, {n, D}), view(src, {pairs}), k, view(xs, {pairs, D}));
    kernels::moe_permute_backward(ctx(), view(dxs, {pairs, D}), view(pos, {pairs}), k,
                                  view(dx, {n, D}));
    kernels::moe_combine(ctx(), view(xs, {pairs, D}), view(w, {n, k}), view(pos, {pairs}),
                         view(y, {n, D}));
    kernels::moe_combine_backward(ctx(), view(dy, {n, D}), view(xs, {pairs, D}), view(w, {n, k}),
                                  view(pos, {pairs}), view(dys, {pairs, D}), view(dws, {n, k}));
    Tensor xsd = dev.alloc(DType::f32, {pairs, D}), yd = dev.upload(y0, {n, D});
    Tensor dxd = dev.upload(dx0, {n, D}), wdev = dev.upload(w, {n, k});
    Tensor dysd = dev.alloc(DType::f32, {pairs, D}), dwsd = dev.alloc(DType::f32, {n, k});
    kernels::moe_permute(ctx(), dev.upload(x, {n, D}), srcd, k, xsd);
    kernels::moe_permute_backward(ctx(), dev.upload(dxs, {pairs, D}), posd, k, dxd);
    kernels::moe_combine(ctx(), xsd, wdev, posd, yd);
    kernels::moe_combine_backward(ctx(), dev.upload(dy, {n, D}), xsd, wdev, posd, dysd, dwsd);
    CHECK(download<float>(xsd) == xs);
    GPU_CHECK_CLOSE("permute_backward dx", download<float>(dxd), dx, 1e-6);
    GPU_CHECK_CLOSE("combine y", download<float>(yd), y, 1e-6);
    GPU_CHECK_CLOSE("combine_backward dys", download<float>(dysd), dys, 1e-6);
    GPU_CHECK_CLOSE("combine_backward dweights", download<float>(dwsd), dws, 1e-5);
  }
}

TEST_CASE("gpu grouped GEMMs over experts (FP32 and BF16, empty experts) match the CPU",
          "[gpu][moe][gemm]") {
  const std::vector<int32_t> off = ragged_offsets();
  const int64_t E = 5, M = 300, N = 136, K = 200;
  for (bool trans_b : {true, false})
    for (bool bf16 : {false, true}) {
      Device dev;
      std::vector<float> A = random(size_t(M * K), 52), B = random(size_t(E * N * K), 53);
      std::vector<float> C = random(size_t(M * N), 54), dC = random(size_t(M * N), 55);
      std::vector<float> want = C, dB = random(B.size(), 56), dB_want = dB;
      const Tensor Bh = trans_b ? view(B, {E, N, K}) : view(B, {E, K, N});
      const Tensor Bd = trans_b ? dev.upload(B, {E, N, K}) : dev.upload(B, {E, K, N});
      Tensor Ad = dev.upload(A, {M, K}), Cd = dev.upload(C, {M, N}),
             offd = dev.upload(off, {E + 1});
      std::vector<int32_t> offh = off;
      if (bf16) {
        kernels::grouped_gemm_bf16(ctx(), view(A, {M, K}), Bh, trans_b, view(offh, {E + 1}),
                                   view(want, {M, N}), 0.5, 0.25);
        kernels::grouped_gemm_bf16(ctx(), Ad, Bd, trans_b, offd, Cd, 0.5, 0.25);
      } else {
        kernels::grouped_gemm(ctx(), view(A, {M, K}), Bh, trans_b, view(offh, {E + 1}),
                              view(want, {M, N}), 0.5, 0.25);
        kernels::grouped_gemm(ctx(), Ad, Bd, trans_b, offd, Cd, 0.5, 0.25);
      }
      INFO("trans_b " << trans_b << " bf16 " << bf16);
      GPU_CHECK_CLOSE("grouped_gemm", download<float>(Cd), want, 2e-5);
      if (!trans_b) continue;
      Tensor dBd = dev.upload(dB, {E, N, K});
      if (bf16) {
        kernels::grouped_gemm_wgrad_bf16(ctx(), view(dC, {M, N}), view(A, {M, K}),
                                         view(offh, {E + 1}), view(dB_want, {E, N, K}));
        kernels::grouped_gemm_wgrad_bf16(ctx(), dev.upload(dC, {M, N}), Ad, offd, dBd);
      } else {
        kernels::grouped_gemm_wgrad(ctx(), view(dC, {M, N}), view(A, {M, K}), view(offh, {E + 1}),
                                    view(dB_want, {E, N, K}));
        kernels::grouped_gemm_wgrad(ctx(), dev.upload(dC, {M, N}), Ad, offd, dBd);
      }
      GPU_CHECK_CLOSE("grouped_gemm_wgrad", download<float>(dBd), dB_want, 2e-5);
    }
  // Offsets that do not end at the row count are reported, not used.
  Device dev;
  std::vector<int32_t> bad = {0, 10, 5, 300};
  Tensor C = dev.alloc(DType::f32, {300, 8});
  kernels::grouped_gemm(ctx(), dev.upload(random(300 * 16, 57), {300, 16}),
                        dev.upload(random(3 * 8 * 16, 58), {3, 8, 16}), true, dev.upload(bad, {4}),
                        C);
  CHECK_THROWS_WITH(runtime().raise_device_errors(), Catch::Contains("segment offsets"));
}
