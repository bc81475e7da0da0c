// FP8 on the GPU against the CPU: quantization bit for bit (codes and scales, every tiling, both
// formats, power-of-two scales, a NaN tile, segments with an empty one), dequantization and
// requantization, and the FP8 GEMMs (forward, dgrad, wgrad; dense through cuBLASLt where its
// alignment rules hold, asserted by the fallback counter, and through the SIMT kernel otherwise;
// grouped with empty experts) against the CPU emulation on the same codes and scales.
#include <cmath>
#include <cstring>

#include "../kernels/fp8_testing.hpp"
#include "gpu_testing.hpp"
#include "kernels/fp8_ops.hpp"

using namespace gpu_testing;
using fp8_testing::QBuf;
using kernels::Fp8Tensor;
using kernels::Fp8Tiling;

namespace {

// A device copy of a host-quantized tensor.
Fp8Tensor upload(Device& dev, const QBuf& b) {
  Fp8Tensor q = b.q;
  q.codes = dev.alloc(b.q.codes.dtype, {int64_t(b.codes.size())});
  q.codes.ndim = b.q.codes.ndim;
  q.codes.shape = b.q.codes.shape;
  Tensor h = b.q.codes;
  kernels::copy(h, q.codes);
  q.scales = dev.upload(b.scales, {int64_t(b.scales.size())});
  q.scales.ndim = b.q.scales.ndim;
  q.scales.shape = b.q.scales.shape;
  return q;
}

// An empty device tensor shaped like a host one.
Tensor like(Device& dev, const Tensor& t) {
  Tensor d = dev.alloc(t.dtype, {t.numel()});
  d.ndim = t.ndim;
  d.shape = t.shape;
  return d;
}

// Equal bit patterns, or both NaN (CPU division keeps a NaN's payload, the GPU's makes it
// canonical).
bool same_values(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::isnan(a[i]) && std::isnan(b[i])) && std::memcmp(&a[i], &b[i], 4) != 0) return false;
  return true;
}

QBuf quantized(DType fmt, Fp8Tiling tiling, int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<float> x = random(size_t(rows * cols), seed, 2.0);
  for (int64_t r = 0; r < rows; r += 5) x[r * cols] *= 60.0f;
  QBuf b(fmt, tiling, rows, cols);
  kernels::fp8_quantize(ctx(), view(x, {rows, cols}), b.q);
  return b;
}

}  // namespace

TEST_CASE("gpu fp8 quantization is bit-exact with the CPU", "[gpu][fp8]") {
  for (DType fmt : {DType::e4m3, DType::e5m2})
    for (Fp8Tiling tiling : {Fp8Tiling::row_1x128, Fp8Tiling::block_128x128, Fp8Tiling::col_128x1})
      for (bool pow2 : {false, true})
        for (auto dims : {std::array<int64_t, 2>{1, 1}, std::array<int64_t, 2>{300, 200},
                          std::array<int64_t, 2>{256, 512}}) {
          Device dev;
          const int64_t R = dims[0], C = dims[1];
          std::vector<float> x = random(size_t(R * C), 60, 3.0);
          for (int64_t r = 0; r < R; r += 3) x[r * C] *= 1e4f;  // saturation in E4M3
          if (R * C > 1000) x[1000] = std::nanf("");            // a NaN tile keeps a NaN scale
          QBuf want(fmt, tiling, R, C);
          kernels::fp8_quantize(ctx(), view(x, {R, C}), want.q, pow2);
          QBuf init(fmt, tiling, R, C);
          Fp8Tensor got = upload(dev, init);
          kernels::fp8_quantize(ctx(), dev.upload(x, {R, C}), got, pow2);
          INFO(core::dtype_name(fmt) << " " << kernels::fp8_tiling_name(tiling) << " pow2 " << pow2
                                     << " " << R << "x" << C);
          CHECK(download<uint8_t>(got.codes) == want.codes);
          CHECK(same_values(download<float>(got.scales), want.scales));
          // Dequantization: decode(code) * scale, one rounding, the same on both.
          std::vector<float> xr(x.size());
          kernels::fp8_dequantize(ctx(), want.q, view(xr, {R, C}));
          Tensor xd = dev.alloc(DType::f32, {R, C});
          kernels::fp8_dequantize(ctx(), got, xd);
          CHECK(same_values(download<float>(xd), xr));
        }
}

TEST_CASE("gpu fp8 segment quantization and requantization match the CPU", "[gpu][fp8]") {
  Device dev;
  const std::vector<int32_t> off = {0, 0, 130, 130, 257, 300};
  const int64_t R = 300, C = 96, E = 5;
  std::vector<float> x = random(size_t(R * C), 61, 2.0);
  std::vector<int32_t> offh = off;
  QBuf want = QBuf::segments(DType::e4m3, R, C, E);
  kernels::fp8_quantize_segments(ctx(), view(x, {R, C}), view(offh, {E + 1}), want.q);
  QBuf init = QBuf::segments(DType::e4m3, R, C, E);
  Fp8Tensor got = upload(dev, init);
  Tensor offd = dev.upload(off, {E + 1});
  kernels::fp8_quantize_segments(ctx(), dev.upload(x, {R, C}), offd, got);
  CHECK(download<uint8_t>(got.codes) == want.codes);
  CHECK(download<float>(got.scales) == want.scales);
  // Re-tiling a cached 1x128 activation into per-segment 128x1 tiles.
  QBuf row = quantized(DType::e4m3, Fp8Tiling::row_1x128, R, C, 62);
  QBuf re_want = QBuf::segments(DType::e4m3, R, C, E);
  kernels::fp8_requantize_segments(ctx(), row.q, view(offh, {E + 1}), re_want.q);
  QBuf re_init = QBuf::segments(DType::e4m3, R, C, E);
  Fp8Tensor re_got = upload(dev, re_init);
  kernels::fp8_requantize_segments(ctx(), upload(dev, row), offd, re_got);
  CHECK(download<uint8_t>(re_got.codes) == re_want.codes);
  CHECK(download<float>(re_got.scales) == re_want.scales);
}

TEST_CASE("gpu fp8 GEMMs match the CPU emulation on the same codes and scales",
          "[gpu][fp8][gemm]") {
  struct Shape {
    int64_t M, N, K;
    bool lt;  // cuBLASLt's alignment rules hold: it must take the GEMM (no fallback)
  };
  for (Shape s : {Shape{256, 512, 384, true}, Shape{128, 256, 1024, true},
                  Shape{200, 136, 264, false}, Shape{1, 16, 130, false}})
    for (auto kind : {0, 1, 2}) {
      Device dev;
      const int64_t a_cols = kind == 0 ? s.K : s.N;
      const Fp8Tiling act = kind == 2 ? Fp8Tiling::col_128x1 : Fp8Tiling::row_1x128;
      QBuf a = quantized(DType::e4m3, act, s.M, a_cols, 63);
      QBuf b = kind == 2 ? quantized(DType::e4m3, Fp8Tiling::col_128x1, s.M, s.K, 64)
                         : quantized(DType::e4m3, Fp8Tiling::block_128x128, s.N, s.K, 65);
      const int64_t rows = kind == 2 ? s.N : s.M, cols = kind == 0 ? s.N : s.K;
      std::vector<float> start = random(size_t(rows * cols), 66), want = start;
      Tensor outd = dev.upload(start, {rows, cols});
      const Fp8Tensor ad = upload(dev, a), bd = upload(dev, b);
      const int64_t fallbacks = runtime().lt_fallbacks();
      if (kind == 0) {
        kernels::fp8_gemm_forward(ctx(), a.q, b.q, view(want, {rows, cols}), 0.5);
        kernels::fp8_gemm_forward(ctx(), ad, bd, outd, 0.5);
      } else if (kind == 1) {
        kernels::fp8_gemm_dgrad(ctx(), a.q, b.q, view(want, {rows, cols}));
        kernels::fp8_gemm_dgrad(ctx(), ad, bd, outd);
      } else {
        kernels::fp8_gemm_wgrad(ctx(), a.q, b.q, view(want, {rows, cols}));
        kernels::fp8_gemm_wgrad(ctx(), ad, bd, outd);
      }
      const std::vector<float> got = download<float>(outd);
      INFO("kind " << kind << " M " << s.M << " N " << s.N << " K " << s.K);
      // Same exact products and block scales; cuBLASLt accumulates inside a 128-block with the
      // tensor cores' limited precision before promoting to FP32.
      GPU_CHECK_CLOSE("fp8 gemm", got, want, s.lt ? 2e-4 : 1e-5);
      CHECK(fp8_testing::gemm_diff(want, got) < 1e-7);
      if (s.lt) CHECK(runtime().lt_fallbacks() == fallbacks);
    }
}

TEST_CASE("gpu fp8 grouped GEMMs (empty experts) match the CPU emulation", "[gpu][fp8][moe]") {
  const std::vector<int32_t> off = {0, 0, 130, 130, 257, 300};
  std::vector<int32_t> offh = off;
  const int64_t E = 5, M = 300, N = 136, K = 200;
  for (int kind : {0, 1, 2}) {
    Device dev;
    Tensor offd = dev.upload(off, {E + 1});
    std::vector<float> want;
    std::vector<float> got;
    if (kind < 2) {
      QBuf a = quantized(DType::e4m3, Fp8Tiling::row_1x128, M, kind == 0 ? K : N, 67);
      std::vector<float> w = random(size_t(E * N * K), 68);
      QBuf wq = QBuf::experts(DType::e4m3, E, N, K);
      kernels::fp8_quantize(ctx(), view(w, {E, N, K}), wq.q);
      const int64_t cols = kind == 0 ? N : K;
      std::vector<float> start = random(size_t(M * cols), 69);
      want = start;
      Tensor outd = dev.upload(start, {M, cols});
      if (kind == 0) {
        kernels::fp8_grouped_gemm_forward(ctx(), a.q, wq.q, view(offh, {E + 1}),
                                          view(want, {M, cols}), 1.0);
        kernels::fp8_grouped_gemm_forward(ctx(), upload(dev, a), upload(dev, wq), offd, outd, 1.0);
      } else {
        kernels::fp8_grouped_gemm_dgrad(ctx(), a.q, wq.q, view(offh, {E + 1}),
                                        view(want, {M, cols}));
        kernels::fp8_grouped_gemm_dgrad(ctx(), upload(dev, a), upload(dev, wq), offd, outd);
      }
      got = download<float>(outd);
    } else {
      std::vector<float> dy = random(size_t(M * N), 70), x = random(size_t(M * K), 71);
      QBuf dq = QBuf::segments(DType::e4m3, M, N, E), xq = QBuf::segments(DType::e4m3, M, K, E);
      kernels::fp8_quantize_segments(ctx(), view(dy, {M, N}), view(offh, {E + 1}), dq.q);
      kernels::fp8_quantize_segments(ctx(), view(x, {M, K}), view(offh, {E + 1}), xq.q);
      std::vector<float> start = random(size_t(E * N * K), 72);
      want = start;
      Tensor outd = dev.upload(start, {E, N, K});
      kernels::fp8_grouped_gemm_wgrad(ctx(), dq.q, xq.q, view(offh, {E + 1}),
                                      view(want, {E, N, K}));
      kernels::fp8_grouped_gemm_wgrad(ctx(), upload(dev, dq), upload(dev, xq), offd, outd);
      got = download<float>(outd);
    }
    INFO("grouped kind " << kind);
    GPU_CHECK_CLOSE("fp8 grouped gemm", got, want, 1e-5);
  }
}
