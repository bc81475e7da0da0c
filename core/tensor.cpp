#include "core/tensor.hpp"

#include <fmt/format.h>

namespace core {

Tensor::Tensor(void* d, DType t, std::initializer_list<int64_t> dims, Device dev)
    : data(d), dtype(t), device(dev) {
  FLOT_CHECK(dims.size() <= kMaxDims, "{} dimensions, at most {}", dims.size(), kMaxDims);
  for (int64_t s : dims) {
    FLOT_CHECK(s >= 0, "negative dimension {}", s);
    shape[ndim++] = s;
  }
}

int64_t Tensor::numel() const {
  if (ndim == 0) return data ? 1 : 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

int64_t Tensor::rows() const {
  if (ndim == 0) return 0;
  int64_t r = 1;  // not numel / last dim: the last dimension may be 0
  for (int i = 0; i < ndim - 1; ++i) r *= shape[i];
  return r;
}

int64_t Tensor::size(int d) const {
  if (d < 0) d += ndim;
  FLOT_CHECK(d >= 0 && d < ndim, "dimension {} of a {}-d tensor", d, ndim);
  return shape[d];
}

Tensor Tensor::reshape(std::initializer_list<int64_t> dims) const {
  Tensor t(data, dtype, dims, device);
  FLOT_CHECK(t.numel() == numel(), "reshape {} -> {}", shape_str(), t.shape_str());
  return t;
}

Tensor Tensor::matrix(int64_t cols) const {
  FLOT_CHECK(cols > 0 && numel() % cols == 0, "{} as a matrix of {} columns", shape_str(), cols);
  return reshape({numel() / cols, cols});
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  FLOT_CHECK(ndim >= 1 && 0 <= begin && begin <= end && end <= shape[0], "slice [{}, {}) of {}",
             begin, end, shape_str());
  Tensor t = *this;
  int64_t row = numel() / (shape[0] == 0 ? 1 : shape[0]);
  t.data = static_cast<char*>(data) + begin * row * dtype_size(dtype);
  t.shape[0] = end - begin;
  return t;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool Tensor::same_shape(const Tensor& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (shape[i] != o.shape[i]) return false;
  return true;
}

void check_shape(const Tensor& t, std::initializer_list<int64_t> dims, const char* what) {
  bool ok = t.ndim == static_cast<int>(dims.size());
  int i = 0;
  std::string want = "[";
  for (int64_t d : dims) {
    if (ok && d != -1 && t.shape[i] != d) ok = false;
    want += (i ? ", " : "") + (d == -1 ? std::string("*") : std::to_string(d));
    ++i;
  }
  want += "]";
  FLOT_CHECK(ok, "{} has shape {}, expected {}", what, t.shape_str(), want);
}

void check_dtype(const Tensor& t, DType dtype, const char* what) {
  FLOT_CHECK(t.dtype == dtype, "{} is {}, expected {}", what, dtype_name(t.dtype), dtype_name(dtype));
}

}  // namespace core
