// The decode tables of kernels/fp8_format.hpp, built once from the OCP field definitions.
#include "kernels/fp8_format.hpp"

#include <array>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace kernels {

namespace {

// value = (-1)^s * 2^(1 - bias) * (m / 2^man) for exponent field 0 (subnormals and zeros),
//         (-1)^s * 2^(e - bias) * (1 + m / 2^man) otherwise, with the special codes of each format.
std::array<float, 256> build_table(int man, int bias, bool ieee_specials) {
  std::array<float, 256> t{};
  const int exp_max = (1 << (7 - man)) - 1, man_max = (1 << man) - 1;
  for (int c = 0; c < 256; ++c) {
    const int s = c >> 7, e = (c >> man) & exp_max, m = c & man_max;
    double v;
    if (e == exp_max && (ieee_specials || m == man_max)) {
      // E5M2: S.11111.00 is infinity, the rest NaN. E4M3: only S.1111.111 is NaN.
      v = ieee_specials && m == 0 ? std::numeric_limits<double>::infinity()
                                  : std::numeric_limits<double>::quiet_NaN();
    } else if (e == 0) {
      v = std::ldexp(static_cast<double>(m), 1 - bias - man);
    } else {
      v = std::ldexp(static_cast<double>(m + (1 << man)), e - bias - man);
    }
    t[c] = static_cast<float>(s ? -v : v);
  }
  return t;
}

}  // namespace

const float* e4m3_table() {
  static const std::array<float, 256> table = build_table(3, 7, false);
  return table.data();
}

const float* e5m2_table() {
  static const std::array<float, 256> table = build_table(2, 15, true);
  return table.data();
}

bool is_fp8(core::DType t) {
  return t == core::DType::e4m3 || t == core::DType::e5m2;
}

float fp8_max(core::DType t) {
  FLOT_CHECK(is_fp8(t), "{} is not an FP8 dtype", core::dtype_name(t));
  return t == core::DType::e4m3 ? kE4m3Max : kE5m2Max;
}

const float* fp8_table(core::DType t) {
  FLOT_CHECK(is_fp8(t), "{} is not an FP8 dtype", core::dtype_name(t));
  return t == core::DType::e4m3 ? e4m3_table() : e5m2_table();
}

}  // namespace kernels
