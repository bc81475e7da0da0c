// FP8 wire rows (codes packed with their scales) and the row permutation over any dtype: what the
// MoE dispatch sends and reorders in low precision.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "common/gradcheck.hpp"
#include "fp8_testing.hpp"
#include "kernels/moe_ops.hpp"

using namespace fp8_testing;

TEST_CASE("fp8 rows pack codes with their scales and unpack to the same bits", "[fp8]") {
  core::Context ctx;
  for (int64_t cols : {1, 128, 200, 384}) {
    DYNAMIC_SECTION("cols " << cols) {
      const int64_t rows = 7;
      auto x = testing::random_vector<float>(rows * cols, 31, 3.0);
      QBuf q(DType::e4m3, Fp8Tiling::row_1x128, rows, cols);
      kernels::fp8_quantize(ctx, Tensor::of(x.data(), {rows, cols}), q.q);
      const int64_t width = kernels::fp8_row_bytes(cols);
      CHECK(width == cols + 4 * tiles(cols));
      std::vector<uint8_t> packed(rows * width, 0xAB);
      const Tensor P = Tensor::of(packed.data(), {rows, width});
      kernels::fp8_pack_rows(ctx, q.q, P);
      // Row r: its codes, then its scales' bytes.
      for (int64_t r = 0; r < rows; ++r) {
        CHECK(std::memcmp(&packed[r * width], &q.codes[r * cols], cols) == 0);
        CHECK(std::memcmp(&packed[r * width + cols], &q.scales[r * tiles(cols)], 4 * tiles(cols)) ==
              0);
      }
      QBuf back(DType::e4m3, Fp8Tiling::row_1x128, rows, cols);
      kernels::fp8_unpack_rows(ctx, P, back.q);
      CHECK(back.codes == q.codes);
      CHECK(std::memcmp(back.scales.data(), q.scales.data(), 4 * q.scales.size()) == 0);
    }
  }
}

TEST_CASE("fp8 rows reject other tilings and mismatched widths", "[fp8]") {
  core::Context ctx;
  QBuf col(DType::e4m3, Fp8Tiling::col_128x1, 4, 130);
  std::vector<uint8_t> packed(4 * kernels::fp8_row_bytes(130));
  const Tensor P = Tensor::of(packed.data(), {4, kernels::fp8_row_bytes(130)});
  CHECK_THROWS_AS(kernels::fp8_pack_rows(ctx, col.q, P), core::InternalError);
  QBuf row(DType::e4m3, Fp8Tiling::row_1x128, 4, 130);
  CHECK_NOTHROW(kernels::fp8_pack_rows(ctx, row.q, P));
  CHECK_THROWS_AS(kernels::fp8_unpack_rows(ctx, Tensor::of(packed.data(), {4, 130}), row.q),
                  core::InternalError);
}

TEST_CASE("the row permutation moves whole rows of any dtype", "[fp8][moe]") {
  core::Context ctx;
  // 3 tokens, top-2: xs[r] = x[src[r] / 2]
  const std::vector<int32_t> src = {5, 0, 2, 1, 4, 3};
  const Tensor S = Tensor::of(src.data(), {6});
  SECTION("packed FP8 rows (uint8)") {
    std::vector<uint8_t> x(3 * 9), xs(6 * 9);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>(i * 7);
    kernels::moe_permute(ctx, Tensor::of(x.data(), {3, 9}), S, 2, Tensor::of(xs.data(), {6, 9}));
    for (int r = 0; r < 6; ++r) CHECK(std::memcmp(&xs[r * 9], &x[(src[r] / 2) * 9], 9) == 0);
  }
  SECTION("bf16 rows") {
    std::vector<uint16_t> x(3 * 4), xs(6 * 4);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint16_t>(1000 + i);
    kernels::moe_permute(ctx, Tensor(x.data(), DType::bf16, {3, 4}), S, 2,
                         Tensor(xs.data(), DType::bf16, {6, 4}));
    for (int r = 0; r < 6; ++r)
      for (int c = 0; c < 4; ++c) CHECK(xs[r * 4 + c] == x[(src[r] / 2) * 4 + c]);
  }
  SECTION("dtypes must match") {
    std::vector<uint8_t> x(3 * 4), xs(6 * 8);
    CHECK_THROWS_AS(kernels::moe_permute(ctx, Tensor::of(x.data(), {3, 4}), S, 2,
                                         Tensor(xs.data(), DType::bf16, {6, 4})),
                    core::InternalError);
  }
}
