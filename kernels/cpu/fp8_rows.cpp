// Packing of row_1x128 FP8 rows with their scales into byte rows and back (kernels/fp8_ops.hpp).
#include <cstring>

#include "kernels/cpu/fp8.hpp"

namespace kernels::cpu {

void fp8_pack_rows(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                   int64_t scale_cols, uint8_t* packed, int threads) {
  const int64_t row_bytes = cols + 4 * scale_cols;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* out = packed + r * row_bytes;
    std::memcpy(out, codes + r * cols, cols);
    std::memcpy(out + cols, scales + r * scale_cols, 4 * scale_cols);
  }
}

void fp8_unpack_rows(const uint8_t* packed, int64_t rows, int64_t cols, int64_t scale_cols,
                     uint8_t* codes, float* scales, int threads) {
  const int64_t row_bytes = cols + 4 * scale_cols;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = packed + r * row_bytes;
    std::memcpy(codes + r * cols, in, cols);
    std::memcpy(scales + r * scale_cols, in + cols, 4 * scale_cols);
  }
}

}  // namespace kernels::cpu
