// The two OCP 8-bit float formats (E4M3 and E5M2) and BF16 rounding, element by element.
//
// Encoding from float is bit-exact with CUDA's saturating conversion
// __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3 / __NV_E5M2) (cuda_fp8.hpp; PTX
// cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32):
// - round to nearest, ties to even, in one step from the float value (subnormals exact);
// - |x| at or below half the smallest subnormal becomes a zero of x's sign;
// - finite values beyond the largest finite value AND infinities saturate to +-max finite
//   (E4M3 +-448 = 0x7E / 0xFE, E5M2 +-57344 = 0x7B / 0xFB): "satfinite" never makes an infinity;
// - every NaN (either sign, any payload) becomes the canonical NaN 0x7F in both formats.
// Decoding goes through a 256-entry float table per format; E4M3 has NaN at S.1111.111 and no
// infinities, E5M2 has infinities at S.11111.00 and NaN at S.11111.{01,10,11}; every NaN code
// decodes to a quiet float NaN. Every finite code decodes exactly, so products of two decoded
// codes are exact in float (at most 4 x 4 significant bits).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/dtype.hpp"

namespace kernels {

constexpr float kE4m3Max = 448.0f;    // 1.75 * 2^8, code 0x7E
constexpr float kE5m2Max = 57344.0f;  // 1.75 * 2^15, code 0x7B
constexpr uint8_t kFp8NaN = 0x7F;     // the NaN both encoders produce

namespace fp8_detail {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// One encoder for both formats, branch-free so that quantization loops vectorize.
// kMan: stored mantissa bits; kBias: exponent bias; kMaxCode: the largest finite code.
// Normal range: round the float's significand to kMan bits (ties to even, the carry may ripple
// into the exponent) and rebias the exponent. Below the smallest normal the format's subnormals
// are the multiples of 2^(1 - kBias - kMan); adding 2^(23 + 1 - kBias - kMan) in float rounds
// |x| to such a multiple with the FPU's own ties-to-even, and the integer difference of the bit
// patterns is the code (the smallest normal comes out as code 1 << kMan, which is its encoding).
template <int kMan, int kBias, uint32_t kMaxCode>
inline uint8_t encode_satfinite(float x) {
  constexpr int kShift = 23 - kMan;
  constexpr uint32_t kMinNormalBits = static_cast<uint32_t>(128 - kBias) << 23;  // 2^(1 - kBias)
  constexpr uint32_t kRebias = static_cast<uint32_t>(127 - kBias) << kMan;
  constexpr uint32_t kMagicBits = static_cast<uint32_t>(127 + 24 - kBias - kMan) << 23;
  const uint32_t u = bits_of(x);
  const uint32_t a = u & 0x7fffffffu;
  const uint32_t sign = (u >> 24) & 0x80u;
  uint32_t normal = ((a + ((1u << (kShift - 1)) - 1u) + ((a >> kShift) & 1u)) >> kShift) - kRebias;
  normal = std::min(normal, kMaxCode);  // beyond max finite, and infinity: saturate
  const uint32_t sub = bits_of(float_of(a) + float_of(kMagicBits)) - kMagicBits;
  // Selects as masks rather than ?: so that GCC if-converts and vectorizes the caller's loop.
  const uint32_t is_sub = 0u - static_cast<uint32_t>(a < kMinNormalBits);
  const uint32_t is_nan = 0u - static_cast<uint32_t>(a > 0x7f800000u);
  const uint32_t code = ((sub & is_sub) | (normal & ~is_sub)) | sign;
  return static_cast<uint8_t>((code & ~is_nan) | (uint32_t{kFp8NaN} & is_nan));
}

}  // namespace fp8_detail

// float -> E4M3 code, satfinite (see the top of the file).
inline uint8_t f32_to_e4m3(float x) {
  return fp8_detail::encode_satfinite<3, 7, 0x7Eu>(x);
}
// float -> E5M2 code, satfinite (see the top of the file).
inline uint8_t f32_to_e5m2(float x) {
  return fp8_detail::encode_satfinite<2, 15, 0x7Bu>(x);
}

// The 256 decoded values of each format, indexed by code.
const float* e4m3_table();
const float* e5m2_table();
inline float e4m3_to_f32(uint8_t c) {
  return e4m3_table()[c];
}
inline float e5m2_to_f32(uint8_t c) {
  return e5m2_table()[c];
}

// Per-format constants and table for code that handles both formats (dtype e4m3 or e5m2).
bool is_fp8(core::DType t);
float fp8_max(core::DType t);
const float* fp8_table(core::DType t);

// float -> BF16 -> float: the value a BF16 operand holds (ties to even, NaN stays NaN).
inline float round_bf16(float x) {
  return core::bf16_to_f32(core::f32_to_bf16(x));
}

}  // namespace kernels
