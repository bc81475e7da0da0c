// Tile-wise FP8 quantization (kernels/fp8_ops.hpp): every scale equals max(amax, 1e-4) / max of
// its tile as the layout defines it (recomputed here element by element), the dequantized values
// stay within half an FP8 ulp, zero / constant / non-finite tiles, partial edge tiles, power-of-
// two scales, tiles over segments, re-tiling, and the checks on bad arguments.
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/gradcheck.hpp"
#include "core/arena.hpp"
#include "core/error.hpp"
#include "fp8_testing.hpp"
#include "kernels/fp8_format.hpp"
#include "kernels/fp8_ops.hpp"

using namespace fp8_testing;

namespace {

// Random values whose magnitude changes by up to 10^4 from tile to tile, so neighbouring tiles
// get very different scales; some tiles lie below the 1e-4 amax floor.
std::vector<float> varied(int64_t n, int64_t cols, uint64_t seed) {
  auto v = testing::random_vector<float>(static_cast<size_t>(n), seed);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, c = i % cols;
    v[i] *= std::pow(10.0f, float((r / 3 + c / 50) % 9) - 6.0f);
  }
  return v;
}

struct Layout {
  Fp8Tiling tiling;
  int64_t matrices, rows, cols;
  std::vector<int32_t> offsets;  // segments (col tiling) when not empty
};

// Checks q against x: every scale, the error of every dequantized value, and (pow2 == false)
// that the largest element of each tile encodes to the largest finite code.
void check_quantized(const std::vector<float>& x, const Layout& l, const QBuf& b, bool pow2) {
  const DType fmt = b.q.codes.dtype;
  const float fmt_max = kernels::fp8_max(fmt);
  const float* table = kernels::fp8_table(fmt);
  // E4M3 keeps 3 mantissa bits (half ulp 2^-4 relative) and steps by 2^-9 below 2^-6; E5M2 keeps
  // 2 bits (2^-3) and steps by 2^-16 below 2^-14. Both bounds are in units of the scaled value.
  const double rel = fmt == DType::e4m3 ? 0x1p-4 : 0x1p-3;
  const double sub = fmt == DType::e4m3 ? 0x1p-10 : 0x1p-17;
  std::vector<float> amax(b.scales.size(), 0.0f);
  const int64_t per = l.rows * l.cols;
  auto index = [&](int64_t i) {
    return scale_index(l.tiling, l.rows, l.cols, i / per, (i % per) / l.cols, i % l.cols,
                       l.offsets);
  };
  for (int64_t i = 0; i < int64_t(x.size()); ++i)
    amax[index(i)] = std::max(amax[index(i)], std::fabs(x[i]));
  std::vector<bool> used(b.scales.size(), false);
  for (int64_t i = 0; i < int64_t(x.size()); ++i) used[index(i)] = true;
  size_t bad_scale = 0, bad_value = 0, bad_peak = 0, bad_decode = 0;
  for (size_t s = 0; s < b.scales.size(); ++s) {
    const float want = used[s] ? expected_scale(amax[s], fmt_max, pow2) : 0.0f;
    bad_scale += !(b.scales[s] == want);
  }
  std::vector<float> xd(x.size());
  core::Context ctx;
  if (l.offsets.empty()) {
    kernels::fp8_dequantize(ctx, b.q,
                            l.matrices > 1 ? Tensor::of(xd.data(), {l.matrices, l.rows, l.cols})
                                           : Tensor::of(xd.data(), {l.rows, l.cols}));
  } else {
    const int64_t e = int64_t(l.offsets.size()) - 1;
    kernels::fp8_dequantize_segments(ctx, b.q, Tensor::of(l.offsets.data(), {e + 1}),
                                     Tensor::of(xd.data(), {l.rows, l.cols}));
  }
  for (int64_t i = 0; i < int64_t(x.size()); ++i) {
    const float s = b.scales[index(i)];
    const double err = std::fabs(double(x[i]) - double(xd[i]));
    // half an ulp of the scaled value, plus float rounding of x / s and of code * s
    const double bound =
        std::max(rel * std::fabs(x[i]), sub * s) * (1 + 1e-6) + 1e-6 * std::fabs(x[i]);
    if (!(err <= bound)) {
      if (bad_value++ < 3)
        UNSCOPED_INFO("x[" << i << "] = " << x[i] << " -> " << xd[i] << ", scale " << s);
    }
    bad_decode += !(xd[i] == table[b.codes[i]] * s);
    if (!pow2 && std::fabs(x[i]) == amax[index(i)] && amax[index(i)] >= 1e-4f)
      bad_peak += (b.codes[i] & 0x7F) != (fmt == DType::e4m3 ? 0x7E : 0x7B);
  }
  CHECK(bad_scale == 0);
  CHECK(bad_value == 0);
  CHECK(bad_peak == 0);
  CHECK(bad_decode == 0);
}

void quantize_and_check(DType fmt, Fp8Tiling tiling, int64_t rows, int64_t cols, bool pow2,
                        int threads) {
  INFO(core::dtype_name(fmt) << " " << kernels::fp8_tiling_name(tiling) << " [" << rows << ", "
                             << cols << "] pow2 " << pow2 << " threads " << threads);
  const auto x = varied(rows * cols, cols, 11 + rows + cols);
  QBuf b(fmt, tiling, rows, cols);
  core::Context ctx;
  ctx.threads = threads;
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {rows, cols}), b.q, pow2);
  check_quantized(x, {tiling, 1, rows, cols, {}}, b, pow2);
}

}  // namespace

TEST_CASE("fp8 quantization: scales per tile and error bounds, all tilings and edge shapes",
          "[fp8]") {
  for (DType fmt : {DType::e4m3, DType::e5m2})
    for (Fp8Tiling tiling : {Fp8Tiling::row_1x128, Fp8Tiling::block_128x128, Fp8Tiling::col_128x1})
      for (auto [rows, cols] :
           {std::pair<int64_t, int64_t>{1, 1}, {3, 127}, {128, 128}, {129, 130}, {300, 520}})
        for (bool pow2 : {false, true}) quantize_and_check(fmt, tiling, rows, cols, pow2, 2);
  quantize_and_check(DType::e4m3, Fp8Tiling::row_1x128, 700, 200, false, 1);
}

TEST_CASE("fp8 quantization: stacked expert weights in 128x128 blocks per expert", "[fp8]") {
  const int64_t E = 3, N = 200, K = 150;
  const auto x = varied(E * N * K, K, 5);
  QBuf b = QBuf::experts(DType::e4m3, E, N, K);
  core::Context ctx;
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {E, N, K}), b.q);
  check_quantized(x, {Fp8Tiling::block_128x128, E, N, K, {}}, b, false);
}

TEST_CASE("fp8 quantization: 128x1 tiles restart at every segment, empty segments included",
          "[fp8]") {
  // segments of 100, 0, 256, 1 and 143 rows: tiles at rows 0, 100, 228, 356, 357 and 485
  const std::vector<int32_t> off = {0, 100, 100, 356, 357, 500};
  const int64_t M = 500, K = 70, E = 5;
  const auto x = varied(M * K, K, 6);
  core::Context ctx;
  ctx.threads = 2;
  for (bool pow2 : {false, true}) {
    QBuf b = QBuf::segments(DType::e4m3, M, K, E);
    kernels::fp8_quantize_segments(ctx, Tensor::of(x.data(), {M, K}),
                                   Tensor::of(off.data(), {E + 1}), b.q, pow2);
    check_quantized(x, {Fp8Tiling::col_128x1, 1, M, K, off}, b, pow2);
  }
  CHECK(kernels::fp8_segment_scale_rows(M, E) == 8);  // 500 / 128 + 5
}

TEST_CASE("fp8 quantization: zero and constant tiles", "[fp8]") {
  core::Context ctx;
  const int64_t R = 2, C = 256;
  std::vector<float> x(R * C, 0.0f);
  for (int64_t c = 0; c < 128; ++c) x[C + c] = 3.0f;      // row 1, tile 0: constant 3
  for (int64_t c = 128; c < 256; ++c) x[C + c] = -1e-5f;  // row 1, tile 1: constant, tiny
  QBuf b(DType::e4m3, Fp8Tiling::row_1x128, R, C);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {R, C}), b.q);
  // a zero tile takes its scale from the amax floor and encodes to +0
  CHECK(b.scales[0] == 1e-4f / 448.0f);
  CHECK(b.scales[1] == 1e-4f / 448.0f);
  for (int64_t c = 0; c < C; ++c) CHECK(b.codes[c] == 0x00);
  // a constant tile: every element is the tile's amax and encodes to 448
  CHECK(b.scales[2] == 3.0f / 448.0f);
  for (int64_t c = 0; c < 128; ++c) CHECK(b.codes[C + c] == 0x7E);
  // a constant tile under the floor: scale 1e-4 / 448, -1e-5 / scale = -44.8 -> -44, which is
  // 1.011b x 2^5 (0xE3: sign, exponent 12 = 1100b, mantissa 011), 0.8 away; 48 is 3.2 away
  CHECK(b.scales[3] == 1e-4f / 448.0f);
  for (int64_t c = 128; c < 256; ++c) CHECK(b.codes[C + c] == 0xE3);
  std::vector<float> xd(R * C);
  kernels::fp8_dequantize(ctx, b.q, Tensor::of(xd.data(), {R, C}));
  CHECK(xd[C] == Approx(3.0f).epsilon(1e-6));
  CHECK(xd[C + 200] == Approx(-44.0 * 1e-4 / 448).epsilon(1e-6));
}

TEST_CASE("fp8 quantization: power-of-two scales never saturate and dequantize exactly", "[fp8]") {
  core::Context ctx;
  // amax 1000: 1000 / 448 = 2.23 -> scale 4, 1000 / 4 = 250 fits below 448
  std::vector<float> x(128, 1.0f);
  x[5] = -1000.0f;
  x[6] = 3.0f;
  QBuf b(DType::e4m3, Fp8Tiling::row_1x128, 1, 128);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {1, 128}), b.q, true);
  CHECK(b.scales[0] == 4.0f);
  CHECK(b.codes[5] == 0xF8);  // -250 -> -256 = -2^8 (exponent 15): 6 away, -240 is 10 away
  CHECK(b.codes[6] == 0x34);  // 3 / 4 = 0.75 = 1.100b x 2^-1: exponent 6 = 0110b, mantissa 100
  CHECK(b.codes[0] == 0x28);  // 1 / 4 = 2^-2: exponent 5 = 0101b
  std::vector<float> xd(128);
  kernels::fp8_dequantize(ctx, b.q, Tensor::of(xd.data(), {1, 128}));
  CHECK(xd[6] == 3.0f);
  CHECK(xd[5] == -1024.0f);  // FP8 rounding, far from saturation (448 * 4 = 1792)
}

TEST_CASE("fp8 quantization: a NaN or infinity makes its tile's scale non-finite", "[fp8]") {
  core::Context ctx;
  std::vector<float> x(3 * 128, 0.5f);
  x[10] = std::nanf("");
  x[128 + 20] = -std::numeric_limits<float>::infinity();
  QBuf b(DType::e4m3, Fp8Tiling::row_1x128, 3, 128);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {3, 128}), b.q);
  CHECK(std::isnan(b.scales[0]));
  CHECK(b.codes[0] == 0x7F);
  CHECK(std::isinf(b.scales[1]));
  CHECK(b.codes[128 + 20] == 0x7F);  // -inf / inf
  CHECK(b.codes[128 + 21] == 0x00);  // 0.5 / inf
  CHECK(b.scales[2] == 0.5f / 448.0f);
  CHECK(b.codes[256] == 0x7E);
}

TEST_CASE("fp8 requantize re-tiles a cached 1x128 activation into 128x1 tiles", "[fp8]") {
  core::Context ctx;
  const int64_t M = 300, K = 260, E = 3;
  const std::vector<int32_t> off = {0, 130, 130, 300};
  const auto x = varied(M * K, K, 9);
  QBuf rows(DType::e4m3, Fp8Tiling::row_1x128, M, K);
  kernels::fp8_quantize(ctx, Tensor::of(x.data(), {M, K}), rows.q);
  std::vector<float> xd(M * K);
  kernels::fp8_dequantize(ctx, rows.q, Tensor::of(xd.data(), {M, K}));

  QBuf direct(DType::e4m3, Fp8Tiling::col_128x1, M, K), re(DType::e4m3, Fp8Tiling::col_128x1, M, K);
  kernels::fp8_quantize(ctx, Tensor::of(xd.data(), {M, K}), direct.q);
  kernels::fp8_requantize(ctx, rows.q, re.q);
  CHECK(re.codes == direct.codes);
  CHECK(re.scales == direct.scales);

  QBuf seg_direct = QBuf::segments(DType::e4m3, M, K, E),
       seg = QBuf::segments(DType::e4m3, M, K, E);
  const Tensor offsets = Tensor::of(off.data(), {E + 1});
  kernels::fp8_quantize_segments(ctx, Tensor::of(xd.data(), {M, K}), offsets, seg_direct.q, true);
  kernels::fp8_requantize_segments(ctx, rows.q, offsets, seg.q, true);
  CHECK(seg.codes == seg_direct.codes);
  CHECK(seg.scales == seg_direct.scales);
}

TEST_CASE("fp8 layout helpers allocate the documented shapes", "[fp8]") {
  core::BumpArena arena;
  using kernels::Fp8Tiling;
  auto a = kernels::fp8_alloc(arena, DType::e4m3, Fp8Tiling::row_1x128, 300, 129);
  CHECK(a.codes.shape_str() == "[300, 129]");
  CHECK(a.scales.shape_str() == "[300, 2]");
  CHECK(a.bytes() == 300 * 129 + 300 * 2 * 4);
  CHECK(kernels::fp8_alloc(arena, DType::e5m2, Fp8Tiling::block_128x128, 300, 129)
            .scales.shape_str() == "[3, 2]");
  CHECK(kernels::fp8_alloc(arena, DType::e4m3, Fp8Tiling::col_128x1, 300, 129).scales.shape_str() ==
        "[3, 129]");
  CHECK(kernels::fp8_alloc_experts(arena, DType::e4m3, 4, 300, 129).scales.shape_str() ==
        "[4, 3, 2]");
  CHECK(kernels::fp8_alloc_segments(arena, DType::e4m3, 300, 129, 4).scales.shape_str() ==
        "[6, 129]");
  CHECK_THROWS_AS(kernels::fp8_alloc(arena, DType::bf16, Fp8Tiling::row_1x128, 2, 2),
                  core::InternalError);
}

TEST_CASE("fp8 quantization rejects mismatched codes, scales, dtypes and offsets", "[fp8]") {
  core::Context ctx;
  std::vector<float> x(256 * 4, 1.0f), wrong_scales(64);
  QBuf b(DType::e4m3, Fp8Tiling::row_1x128, 4, 256);
  const Tensor tx = Tensor::of(x.data(), {4, 256});
  kernels::fp8_quantize(ctx, tx, b.q);  // the good call
  kernels::Fp8Tensor bad = b.q;
  bad.scales = Tensor::of(wrong_scales.data(), {4, 3});
  CHECK_THROWS_AS(kernels::fp8_quantize(ctx, tx, bad), core::InternalError);
  bad = b.q;
  bad.tiling = Fp8Tiling::col_128x1;  // scales [4, 2] do not fit 128x1 tiles of [4, 256]
  CHECK_THROWS_AS(kernels::fp8_quantize(ctx, tx, bad), core::InternalError);
  bad = b.q;
  bad.codes.dtype = DType::f32;
  CHECK_THROWS_AS(kernels::fp8_quantize(ctx, tx, bad), core::InternalError);
  CHECK_THROWS_AS(kernels::fp8_quantize(ctx, Tensor::of(x.data(), {2, 512}), b.q),
                  core::InternalError);
  std::vector<double> xd(256 * 4);
  CHECK_THROWS_AS(kernels::fp8_dequantize(ctx, b.q, Tensor::of(xd.data(), {4, 256})),
                  core::InternalError);
  QBuf s = QBuf::segments(DType::e4m3, 4, 256, 2);
  const std::vector<int32_t> short_off = {0, 1, 3};  // ends at 3, not 4
  CHECK_THROWS_AS(kernels::fp8_quantize_segments(ctx, tx, Tensor::of(short_off.data(), {3}), s.q),
                  core::InternalError);
}
