// Tensor: a non-owning view {data, dtype, device, shape} over memory that lives in an arena.
//
// Row-major and contiguous, at most four dimensions. No reference counting and no autograd: a
// view is as cheap to copy as a pointer. `const Tensor&` means the view does not change; the data
// behind it may still be written (outputs of ops are passed the same way). ptr<T>() checks that T
// matches the dtype, so a float kernel can never silently read doubles.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace core {

constexpr int kMaxDims = 4;

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};

  Tensor() = default;
  Tensor(void* data, DType dtype, std::initializer_list<int64_t> dims, Device device = Device::cpu);
  template <class T>
  static Tensor of(T* data, std::initializer_list<int64_t> dims) {
    return Tensor(const_cast<std::remove_const_t<T>*>(data), dtype_of<std::remove_const_t<T>>(), dims);
  }

  bool empty() const { return data == nullptr; }
  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  // size(-1) is the last dimension.
  int64_t size(int d) const;
  // Rows of a 2-D view of this tensor: every dimension but the last folded together.
  int64_t rows() const;
  int64_t cols() const { return ndim == 0 ? 0 : shape[ndim - 1]; }

  template <class T>
  T* ptr() const {
    FLOT_CHECK(dtype == dtype_of<T>(), "tensor is {}, accessed as {}", dtype_name(dtype),
               dtype_name(dtype_of<T>()));
    return static_cast<T*>(data);
  }
  // Same data, new shape; the element count must match.
  Tensor reshape(std::initializer_list<int64_t> dims) const;
  // The same data as a [numel / cols, cols] matrix.
  Tensor matrix(int64_t cols) const;
  // Rows [begin, end) along dimension 0.
  Tensor slice(int64_t begin, int64_t end) const;
  std::string shape_str() const;
  bool same_shape(const Tensor& o) const;
};

// Throws InternalError naming `what` unless t has exactly these dimensions (-1 matches any).
void check_shape(const Tensor& t, std::initializer_list<int64_t> dims, const char* what);
// Throws InternalError unless t has this dtype.
void check_dtype(const Tensor& t, DType dtype, const char* what);

}  // namespace core
