// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord framing, and the
// "masked" form TFRecord stores so that a CRC of data that itself holds CRCs stays well mixed.
//
// Check value: crc32c("123456789") == 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>

namespace core::insight {

// CRC32C of n bytes; pass a previous result as `crc` to continue over more bytes.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

// TFRecord's mask: rotate right by 15 bits and add a constant.
inline uint32_t mask_crc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace core::insight
