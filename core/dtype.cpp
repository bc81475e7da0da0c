#include "core/dtype.hpp"

#include "core/error.hpp"

namespace core {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::e4m3: return 1;
    case DType::e5m2: return 1;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::f64: return "fp64";
    case DType::bf16: return "bf16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::e4m3: return "e4m3";
    case DType::e5m2: return "e5m2";
    case DType::u8: return "uint8";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  if (name == "fp32" || name == "f32") return DType::f32;
  if (name == "fp64" || name == "f64") return DType::f64;
  if (name == "bf16") return DType::bf16;
  if (name == "int32") return DType::i32;
  if (name == "int64") return DType::i64;
  if (name == "e4m3") return DType::e4m3;
  if (name == "e5m2") return DType::e5m2;
  if (name == "uint8") return DType::u8;
  FLOT_THROW(ConfigError,
             "unknown dtype '{}' (expected fp32, fp64, bf16, int32, int64, e4m3, e5m2 or uint8)", name);
}

}  // namespace core
