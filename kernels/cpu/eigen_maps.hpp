// Eigen views over row-major Flotilla buffers, shared by the CPU kernels.
//
// Everything in Flotilla is row-major, so every map here is RowMajor; a transposed operand is a
// .transpose() of such a map (a column-major view of the same memory), which Eigen's GEMM consumes
// without copying. Strided maps let a kernel address one head inside [rows, heads, dim] directly.
#pragma once

// GCC 12 reports a false -Wmaybe-uninitialized inside Eigen's AVX-512 packing code (an
// intrinsic's deliberately undefined register); the pragma has to be active where the intrinsic
// headers are first read.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#pragma GCC diagnostic pop

#include <cstdint>

namespace kernels::cpu {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatMap = Eigen::Map<RowMat<T>>;
template <class T>
using ConstMatMap = Eigen::Map<const RowMat<T>>;
// Rows `stride` elements apart: one head of a [rows, heads, dim] tensor.
template <class T>
using StridedMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstStridedMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using VecMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstVecMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Below this many elements an OpenMP region costs more than it saves.
constexpr int64_t kParallelMinElems = 1 << 15;

}  // namespace kernels::cpu
