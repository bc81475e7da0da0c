// CPU elementwise kernels over flat buffers: fill, copy, axpy, scale, sum of squares.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels::cpu {

template <class T>
void fill(T* x, int64_t n, T value);
void copy_bytes(const void* src, void* dst, size_t bytes);
template <class T>
void axpy(T alpha, const T* x, T* y, int64_t n);
template <class T>
void scale(T* x, int64_t n, T alpha);
// Accumulated in double whatever T is, so a gradient norm over 1e9 floats keeps its digits.
template <class T>
double sum_squares(const T* x, int64_t n);

}  // namespace kernels::cpu
