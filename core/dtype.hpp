// Element types of stored tensors and the bit-exact BF16 conversion.
//
// f32 is the training dtype, f64 exists so every gradient can be checked by finite differences in
// float64 through the same code, bf16 is a storage type (optimizer moments, BF16 GEMM operands).
// BF16 rounding is round-to-nearest-even, NaN stays NaN. e4m3 and e5m2 are the two OCP 8-bit
// float formats, stored as one raw byte per element; their conversions live in
// kernels/fp8_format.hpp (there is no C++ element type for them, so Tensor::ptr<T> refuses them).
// u8 is raw bytes: rows of mixed content moved whole (FP8 codes with their scales on the wire).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace core {

enum class DType : uint8_t { f32, f64, bf16, i32, i64, e4m3, e5m2, u8 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // throws ConfigError on unknown names

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace core
