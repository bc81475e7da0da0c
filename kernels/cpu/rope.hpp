// CPU rotary position embedding, interleaved pairs, in place.
#pragma once

#include <cstdint>

namespace kernels::cpu {

// x [rows, H, Dh]; turns pair i = dims (offset+2i, offset+2i+1) of every head by
// +-(row % seq_len) * theta^(-2i / rope_dim). The cos/sin table is built once per call from
// angles computed in double, so float and double runs rotate by the same angles.
template <class T>
void rope(T* x, int64_t rows, int64_t H, int64_t Dh, int64_t seq_len, int64_t offset,
          int64_t rope_dim, double theta, bool inverse);

}  // namespace kernels::cpu
