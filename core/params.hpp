// ParamStore: every trainable parameter of this rank, under its global name, in one allocation
// each for parameters, gradients and the two AdamW moments (identical layouts), plus the
// non-gradient state (the experts' balancing bias).
//
// Names are global and follow the public DeepSeek-V3 checkpoint ("model.layers.3.self_attn.
// kv_b_proj.weight"); stacked expert weights ([experts, ...], so a grouped GEMM takes one base
// pointer) name each slice with its GLOBAL expert id. Initial values are a pure function of
// (seed, global name, index within the named tensor), so any parallel layout, which owns a
// different subset of tensors or expert slices, starts from identical weights.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace core {

enum class Init { normal, ones, zeros };

struct ParamSpec {
  std::string name;            // global name; for stacked tensors a pattern with "{}" = expert id
  std::vector<int64_t> shape;  // full shape (dim 0 = slices when stacked)
  int stack_first = -1;        // >= 0: slice i of dim 0 is named with id stack_first + i
  Init init = Init::normal;
  double std = 0.02;
  bool decay = true;           // AdamW weight decay (matrices yes, norm weights no)
  std::string slice_name(int64_t i) const;  // the global name of slice i (stacked only)
};

class ParamStore {
 public:
  explicit ParamStore(DType dtype) : dtype_(dtype) {}
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  // Registration (before finalize). Returns the id used to look the tensor up.
  int add(ParamSpec spec);
  int add_buffer(const std::string& name, std::initializer_list<int64_t> shape);
  // Lays out and allocates (zeroed) parameters, gradients, moments and buffers.
  void finalize(DType moment_dtype);
  // Writes every parameter's initial value from (seed, global name, index); buffers to zero.
  void init(uint64_t seed);

  Tensor param(int id) const { return view(params_.get(), dtype_, id); }
  Tensor grad(int id) const { return view(grads_.get(), dtype_, id); }
  Tensor moment1(int id) const { return view(m_.get(), moment_dtype_, id); }
  Tensor moment2(int id) const { return view(v_.get(), moment_dtype_, id); }
  Tensor buffer(int id) const;
  const ParamSpec& spec(int id) const { return specs_[id]; }
  // The id of the parameter with this (unstacked) name, or -1.
  int find(const std::string& name) const;
  int size() const { return static_cast<int>(specs_.size()); }
  int num_buffers() const { return static_cast<int>(buffers_.size()); }
  const std::string& buffer_name(int id) const { return buffers_[id].name; }

  DType dtype() const { return dtype_; }
  int64_t numel() const { return total_numel_; }
  // All parameters / gradients as one flat view (for reductions and optimizer sharding).
  Tensor flat_params() const;
  Tensor flat_grads() const;
  void zero_grads();
  size_t bytes_params() const { return total_numel_ * dtype_size(dtype_); }
  size_t bytes_moments() const { return 2 * total_numel_ * dtype_size(moment_dtype_); }

 private:
  Tensor view(std::byte* base, DType dt, int id) const;
  struct Buffer {
    std::string name;
    std::vector<int64_t> shape;
    int64_t offset = 0;
  };
  DType dtype_, moment_dtype_ = DType::f32;
  std::vector<ParamSpec> specs_;
  std::vector<int64_t> offsets_;  // element offsets, shared by params, grads and moments
  std::vector<Buffer> buffers_;
  int64_t total_numel_ = 0, buffer_numel_ = 0;
  bool finalized_ = false;
  using Block = std::unique_ptr<std::byte[], void (*)(std::byte*)>;
  Block params_{nullptr, nullptr}, grads_{nullptr, nullptr}, m_{nullptr, nullptr},
      v_{nullptr, nullptr}, bufs_{nullptr, nullptr};
};

// The initial value of element `index` of the tensor with global name `name`: N(0, std^2),
// from a counter-based hash of (seed, name, index).
double init_normal(uint64_t seed, const std::string& name, int64_t index, double std);

}  // namespace core
