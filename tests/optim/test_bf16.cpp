// The bf16 conversion the optimizer stores its moments with: ties to even, NaN, infinities.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/dtype.hpp"

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

TEST_CASE("bf16 keeps representable values exactly", "[optim]") {
  CHECK(core::f32_to_bf16(1.0f) == 0x3F80);
  CHECK(core::f32_to_bf16(-2.0f) == 0xC000);
  CHECK(core::f32_to_bf16(0.0f) == 0x0000);
  CHECK(core::f32_to_bf16(-0.0f) == 0x8000);  // the sign of zero survives
  CHECK(core::bf16_to_f32(0x3F80) == 1.0f);
  CHECK(core::bf16_to_f32(core::f32_to_bf16(0.10009765625f)) == 0.10009765625f);
}

TEST_CASE("bf16 rounds to nearest, ties to even", "[optim]") {
  // 1 + 2^-8 lies halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81): down to even.
  CHECK(core::f32_to_bf16(from_bits(0x3F808000u)) == 0x3F80);
  // 1 + 3 * 2^-8 lies halfway between 0x3F81 and 0x3F82 (even): up to even.
  CHECK(core::f32_to_bf16(from_bits(0x3F818000u)) == 0x3F82);
  // Just above and below a tie go to the nearer neighbour.
  CHECK(core::f32_to_bf16(from_bits(0x3F808001u)) == 0x3F81);
  CHECK(core::f32_to_bf16(from_bits(0x3F807FFFu)) == 0x3F80);
  // Negative values round by magnitude.
  CHECK(core::f32_to_bf16(from_bits(0xBF818000u)) == 0xBF82);
  // 0.1f = 0x3DCCCCCD: truncation would give 0x3DCC, nearest is 0x3DCD.
  CHECK(core::f32_to_bf16(0.1f) == 0x3DCD);
  // A carry out of the mantissa moves to the next exponent: 2 - 2^-9 rounds up to 2.
  CHECK(core::f32_to_bf16(from_bits(0x3FFFC000u)) == 0x4000);
}

TEST_CASE("bf16 NaN stays NaN and infinities stay infinite", "[optim]") {
  CHECK(std::isnan(core::bf16_to_f32(core::f32_to_bf16(NAN))));
  CHECK(std::isnan(core::bf16_to_f32(core::f32_to_bf16(-NAN))));
  // A NaN whose payload lies only in the low 16 bits: plain truncation would turn it into inf.
  CHECK(std::isnan(core::bf16_to_f32(core::f32_to_bf16(from_bits(0x7F800001u)))));
  CHECK(std::isnan(core::bf16_to_f32(core::f32_to_bf16(from_bits(0xFF80FFFFu)))));
  CHECK(core::f32_to_bf16(INFINITY) == 0x7F80);
  CHECK(core::f32_to_bf16(-INFINITY) == 0xFF80);
  CHECK(std::isinf(core::bf16_to_f32(0x7F80)));
  // The largest float is beyond bf16's largest finite value plus half an ulp: it overflows.
  CHECK(core::f32_to_bf16(FLT_MAX) == 0x7F80);
  CHECK(core::f32_to_bf16(from_bits(0x7F7F0000u)) == 0x7F7F);  // bf16's own max is kept
}
