// The FP8 formats of kernels/fp8_format.hpp: every code decodes to its OCP value and round-trips;
// encoding rounds to nearest even, handles subnormals, saturates (satfinite, as CUDA's
// __nv_cvt_float_to_fp8 with __NV_SATFINITE) and maps NaN to 0x7F, checked against bit patterns
// worked out by hand from the OCP 8-bit FP specification, and against an independent
// nearest-value search over the decode table on a million inputs.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/gradcheck.hpp"
#include "kernels/fp8_format.hpp"

namespace {

using kernels::e4m3_to_f32;
using kernels::e5m2_to_f32;
using kernels::f32_to_e4m3;
using kernels::f32_to_e5m2;

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

float p2(int e) {
  return std::ldexp(1.0f, e);
}

// The satfinite encoding by brute force: the finite code nearest to x (ties to the even code,
// i.e. mantissa LSB 0), magnitudes at or beyond the largest finite value saturate, NaN -> 0x7F.
uint8_t reference_encode(float x, const float* table, uint8_t max_code) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= table[max_code]) return max_code | sign;
  // Positive finite codes 0..max_code are increasing in value.
  uint8_t lo = 0;
  while (lo + 1 <= max_code && table[lo + 1] <= a) ++lo;
  const double dlo = a - table[lo], dhi = table[lo + 1] - a;
  const uint8_t c = dlo < dhi   ? lo
                    : dhi < dlo ? uint8_t(lo + 1)
                                : (lo % 2 == 0 ? lo : uint8_t(lo + 1));
  return c | sign;
}

// Inputs that probe every rounding decision: random floats over the formats' ranges (and beyond),
// every code's value, the midpoints between neighbouring codes and one float ulp either side.
std::vector<float> probe_inputs(const float* table, uint8_t max_code, float range) {
  std::vector<float> xs;
  for (int c = 0; c <= max_code; ++c) {
    const float v = table[c];
    xs.push_back(v);
    if (c < max_code) {
      const float mid = static_cast<float>((double(v) + double(table[c + 1])) / 2);
      xs.push_back(mid);
      xs.push_back(std::nextafter(mid, 0.0f));
      xs.push_back(std::nextafter(mid, kInf));
    }
  }
  for (size_t i = 0; i < 1000000; ++i) {
    // log-uniform magnitudes from 2^-24 to 4 * range, random sign
    const double u = double(testing::mix64(7 * i + 1) >> 11) * 0x1.0p-53;
    const double mag = std::exp2(-24.0 + u * (std::log2(range) + 26.0));
    xs.push_back(static_cast<float>(testing::mix64(7 * i + 2) & 1 ? -mag : mag));
  }
  return xs;
}

}  // namespace

TEST_CASE("e4m3 decodes every code to its OCP value", "[fp8]") {
  CHECK(e4m3_to_f32(0x00) == 0.0f);
  CHECK(std::signbit(e4m3_to_f32(0x80)));  // S.0000.000 is -0
  CHECK(e4m3_to_f32(0x01) == p2(-9));      // smallest subnormal 0.001 x 2^-6
  CHECK(e4m3_to_f32(0x07) == 7 * p2(-9));  // largest subnormal 0.111 x 2^-6
  CHECK(e4m3_to_f32(0x08) == p2(-6));      // smallest normal 1.000 x 2^(1-7)
  CHECK(e4m3_to_f32(0x38) == 1.0f);        // 0.0111.000: exponent 7 - bias 7
  CHECK(e4m3_to_f32(0x3C) == 1.5f);        // 0.0111.100
  CHECK(e4m3_to_f32(0x77) == 240.0f);      // 0.1110.111 = 1.875 x 2^7
  CHECK(e4m3_to_f32(0x78) == 256.0f);      // 0.1111.000: exponent 15 is a normal binade
  CHECK(e4m3_to_f32(0x7E) == 448.0f);      // 0.1111.110 = 1.75 x 2^8, the largest finite
  CHECK(e4m3_to_f32(0xFE) == -448.0f);
  CHECK(e4m3_to_f32(0xC0) == -2.0f);     // 1.1000.000
  CHECK(std::isnan(e4m3_to_f32(0x7F)));  // S.1111.111: the only NaNs, no infinities
  CHECK(std::isnan(e4m3_to_f32(0xFF)));
  int nan = 0, inf = 0;
  for (int c = 0; c < 256; ++c) {
    nan += std::isnan(e4m3_to_f32(uint8_t(c)));
    inf += std::isinf(e4m3_to_f32(uint8_t(c)));
  }
  CHECK(nan == 2);
  CHECK(inf == 0);
}

TEST_CASE("e5m2 decodes every code to its OCP value", "[fp8]") {
  CHECK(e5m2_to_f32(0x00) == 0.0f);
  CHECK(std::signbit(e5m2_to_f32(0x80)));
  CHECK(e5m2_to_f32(0x01) == p2(-16));      // smallest subnormal 0.01 x 2^-14
  CHECK(e5m2_to_f32(0x03) == 3 * p2(-16));  // largest subnormal 0.11 x 2^-14
  CHECK(e5m2_to_f32(0x04) == p2(-14));      // smallest normal 1.00 x 2^(1-15)
  CHECK(e5m2_to_f32(0x3C) == 1.0f);         // 0.01111.00
  CHECK(e5m2_to_f32(0xC0) == -2.0f);        // 1.10000.00
  CHECK(e5m2_to_f32(0x7B) == 57344.0f);     // 0.11110.11 = 1.75 x 2^15, the largest finite
  CHECK(e5m2_to_f32(0x7C) == kInf);         // 0.11111.00: IEEE-like infinity
  CHECK(e5m2_to_f32(0xFC) == -kInf);
  for (int c : {0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF}) CHECK(std::isnan(e5m2_to_f32(uint8_t(c))));
  int nan = 0;
  for (int c = 0; c < 256; ++c) nan += std::isnan(e5m2_to_f32(uint8_t(c)));
  CHECK(nan == 6);
}

TEST_CASE("every fp8 code round-trips through float", "[fp8]") {
  for (int c = 0; c < 256; ++c) {
    INFO("code 0x" << std::hex << c);
    const float v4 = e4m3_to_f32(uint8_t(c)), v5 = e5m2_to_f32(uint8_t(c));
    CHECK(f32_to_e4m3(v4) == (std::isnan(v4) ? 0x7F : c));
    if (std::isnan(v5)) {
      CHECK(f32_to_e5m2(v5) == 0x7F);
    } else if (std::isinf(v5)) {
      CHECK(f32_to_e5m2(v5) == (c & 0x80 ? 0xFB : 0x7B));  // satfinite: infinity -> max finite
    } else {
      CHECK(f32_to_e5m2(v5) == c);
    }
  }
}

TEST_CASE("e4m3 encoding against hand-checked bit patterns", "[fp8]") {
  // zeros keep their sign
  CHECK(f32_to_e4m3(0.0f) == 0x00);
  CHECK(f32_to_e4m3(-0.0f) == 0x80);
  // ties to even in the normal range: 1 + 1/16 lies halfway between 1.000 (0x38, even) and
  // 1.001 (0x39); 1 + 3/16 halfway between 1.001 (0x39) and 1.010 (0x3A, even)
  CHECK(f32_to_e4m3(1.0625f) == 0x38);
  CHECK(f32_to_e4m3(1.1875f) == 0x3A);
  CHECK(f32_to_e4m3(std::nextafter(1.0625f, 2.0f)) == 0x39);  // just above the tie: up
  CHECK(f32_to_e4m3(-1.1875f) == 0xBA);
  // ulp 2 at 16 = 2^4 (exponent field 11): 17 ties to 16 (0x58), 19 ties to 20 (0x5A)
  CHECK(f32_to_e4m3(17.0f) == 0x58);
  CHECK(f32_to_e4m3(19.0f) == 0x5A);
  // rounding that carries into the exponent: 1.9375 = 1.1111b ties between 1.875 (0x3F, odd)
  // and 2.0 (0x40, even)
  CHECK(f32_to_e4m3(1.9375f) == 0x40);
  // subnormals, in units of 2^-9: 2^-10 is half a unit and ties to 0; 1.5 units -> 2 (0x02);
  // 3.5 -> 4 (0x04); 7.5 ties between 0x07 and 0x08, the smallest normal (even) wins
  CHECK(f32_to_e4m3(p2(-10)) == 0x00);
  CHECK(f32_to_e4m3(-p2(-10)) == 0x80);
  CHECK(f32_to_e4m3(std::nextafter(p2(-10), 1.0f)) == 0x01);
  CHECK(f32_to_e4m3(3 * p2(-10)) == 0x02);
  CHECK(f32_to_e4m3(7 * p2(-10)) == 0x04);
  CHECK(f32_to_e4m3(15 * p2(-10)) == 0x08);
  CHECK(f32_to_e4m3(std::nextafter(p2(-6), 0.0f)) == 0x08);  // just below the smallest normal
  CHECK(f32_to_e4m3(1e-30f) == 0x00);
  CHECK(f32_to_e4m3(std::numeric_limits<float>::denorm_min()) == 0x00);
  // saturation: (448, 464] rounds to 448 (464 ties to the even 0x7E), beyond saturates, as do
  // infinities; the NaN-pattern 0x7F (which would be 480) is never produced from a number
  CHECK(f32_to_e4m3(448.0f) == 0x7E);
  CHECK(f32_to_e4m3(464.0f) == 0x7E);
  CHECK(f32_to_e4m3(465.0f) == 0x7E);
  CHECK(f32_to_e4m3(480.0f) == 0x7E);
  CHECK(f32_to_e4m3(1e30f) == 0x7E);
  CHECK(f32_to_e4m3(-1e30f) == 0xFE);
  CHECK(f32_to_e4m3(kInf) == 0x7E);
  CHECK(f32_to_e4m3(-kInf) == 0xFE);
  CHECK(f32_to_e4m3(std::numeric_limits<float>::max()) == 0x7E);
  // NaN of either sign -> canonical 0x7F
  CHECK(f32_to_e4m3(kNaN) == 0x7F);
  CHECK(f32_to_e4m3(-kNaN) == 0x7F);
}

TEST_CASE("e5m2 encoding against hand-checked bit patterns", "[fp8]") {
  CHECK(f32_to_e5m2(0.0f) == 0x00);
  CHECK(f32_to_e5m2(-0.0f) == 0x80);
  // 1 + 1/8 ties between 1.00 (0x3C, even) and 1.01 (0x3D); 1 + 3/8 between 1.01 and 1.10 (0x3E)
  CHECK(f32_to_e5m2(1.125f) == 0x3C);
  CHECK(f32_to_e5m2(1.375f) == 0x3E);
  CHECK(f32_to_e5m2(-1.375f) == 0xBE);
  CHECK(f32_to_e5m2(1.875f) == 0x40);  // 1.111b ties between 1.75 (0x3F) and 2.0 (0x40, even)
  // subnormals in units of 2^-16: half a unit -> 0, 1.5 -> 2, 3.5 -> 4 = smallest normal 0x04
  CHECK(f32_to_e5m2(p2(-17)) == 0x00);
  CHECK(f32_to_e5m2(std::nextafter(p2(-17), 1.0f)) == 0x01);
  CHECK(f32_to_e5m2(3 * p2(-17)) == 0x02);
  CHECK(f32_to_e5m2(7 * p2(-17)) == 0x04);
  // saturation: 61440 ties between 57344 (0x7B, odd) and 65536 (the infinity pattern): nearest
  // even would overflow, satfinite gives the largest finite; infinities too
  CHECK(f32_to_e5m2(57344.0f) == 0x7B);
  CHECK(f32_to_e5m2(60000.0f) == 0x7B);
  CHECK(f32_to_e5m2(61440.0f) == 0x7B);
  CHECK(f32_to_e5m2(1e30f) == 0x7B);
  CHECK(f32_to_e5m2(kInf) == 0x7B);
  CHECK(f32_to_e5m2(-kInf) == 0xFB);
  CHECK(f32_to_e5m2(kNaN) == 0x7F);
  CHECK(f32_to_e5m2(-kNaN) == 0x7F);
}

TEST_CASE("fp8 encoding equals the nearest-even table search on a million inputs", "[fp8]") {
  struct Format {
    const char* name;
    const float* table;
    uint8_t max_code;
    uint8_t (*encode)(float);
  };
  for (const Format& f : {Format{"e4m3", kernels::e4m3_table(), 0x7E, f32_to_e4m3},
                          Format{"e5m2", kernels::e5m2_table(), 0x7B, f32_to_e5m2}}) {
    size_t wrong = 0;
    float first_wrong = 0;
    for (float x : probe_inputs(f.table, f.max_code, f.table[f.max_code])) {
      if (f.encode(x) != reference_encode(x, f.table, f.max_code)) {
        if (wrong++ == 0) first_wrong = x;
      }
    }
    INFO(f.name << ": first mismatch at " << first_wrong);
    CHECK(wrong == 0);
  }
}

TEST_CASE("round_bf16 keeps 8 significant bits, ties to even", "[fp8]") {
  CHECK(kernels::round_bf16(1.0f) == 1.0f);
  CHECK(kernels::round_bf16(1.0f + p2(-8)) == 1.0f);               // tie -> even (1.0000000)
  CHECK(kernels::round_bf16(1.0f + 3 * p2(-8)) == 1.0f + p2(-6));  // tie -> even (1.0000010)
  CHECK(kernels::round_bf16(1.0f + p2(-8) + p2(-20)) == 1.0f + p2(-7));
  CHECK(std::isnan(kernels::round_bf16(kNaN)));
}
