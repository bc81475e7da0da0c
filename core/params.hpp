// ParamStore: every trainable parameter of this rank, under its global name, in one allocation
// each for parameters and gradients (identical layouts), plus the non-gradient state (the experts'
// balancing bias). Optimizer state lives with the optimizer (optim/), which may hold only a shard.
//
// Parameters are laid out by reduction group: first every dense parameter (replicated on all
// data-parallel ranks, gradients reduced over dp), then every expert parameter (replicated on the
// expert-data ranks, reduced over edp), each group a contiguous region padded to a multiple the
// caller chooses, so gradient buckets and ZeRO-1 shards are plain ranges of one region.
//
// Names are global and follow the public DeepSeek-V3 checkpoint ("model.layers.3.self_attn.
// kv_b_proj.weight"); stacked expert weights ([experts, ...], so a grouped GEMM takes one base
// pointer) name each slice with its GLOBAL expert id. Initial values are a pure function of
// (seed, global name, index within the named tensor), so any parallel layout, which owns a
// different subset of tensors or expert slices, starts from identical weights.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace core {

enum class Init { normal, ones, zeros };

// Which ranks hold the same copy of a parameter and so reduce its gradient together.
enum class ParamGroup : uint8_t { dense = 0, expert = 1 };
constexpr int kParamGroups = 2;

struct ParamSpec {
  std::string name;            // global name; for stacked tensors a pattern with "{}" = expert id
  std::vector<int64_t> shape;  // full shape (dim 0 = slices when stacked)
  int stack_first = -1;        // >= 0: slice i of dim 0 is named with id stack_first + i
  Init init = Init::normal;
  double std = 0.02;
  bool decay = true;           // AdamW weight decay (matrices yes, norm weights no)
  ParamGroup group = ParamGroup::dense;  // stacked experts are ParamGroup::expert
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
  // Lays out and allocates (zeroed) parameters, gradients and buffers. Each group's region is
  // padded to a multiple of pad[group] elements (ZeRO-1 shards it evenly).
  void finalize(std::array<int64_t, kParamGroups> pad = {1, 1});
  // Writes every parameter's initial value from (seed, global name, index); buffers to zero.
  void init(uint64_t seed);

  Tensor param(int id) const { return view(params_.get(), dtype_, id); }
  Tensor grad(int id) const { return view(grads_.get(), dtype_, id); }
  Tensor buffer(int id) const;
  const ParamSpec& spec(int id) const { return specs_[id]; }
  // The id of the parameter with this (unstacked) name, or -1.
  int find(const std::string& name) const;
  int size() const { return static_cast<int>(specs_.size()); }
  int num_buffers() const { return static_cast<int>(buffers_.size()); }
  const std::string& buffer_name(int id) const { return buffers_[id].name; }

  DType dtype() const { return dtype_; }
  int64_t numel() const { return total_numel_; }
  // All parameters / gradients as one flat view (padding included, always zero).
  Tensor flat_params() const;
  Tensor flat_grads() const;
  // Element range [offset, offset + numel) of parameter id / of a group's padded region in the
  // flat views.
  int64_t offset(int id) const;
  struct Range {
    int64_t begin = 0, end = 0;
    int64_t size() const { return end - begin; }
  };
  Range region(ParamGroup g) const { return regions_[static_cast<int>(g)]; }
  void zero_grads();
  size_t bytes_params() const { return total_numel_ * dtype_size(dtype_); }
  // Elements of real parameters (padding excluded).
  int64_t numel_unpadded() const;

 private:
  Tensor view(std::byte* base, DType dt, int id) const;
  struct Buffer {
    std::string name;
    std::vector<int64_t> shape;
    int64_t offset = 0;
  };
  DType dtype_;
  std::vector<ParamSpec> specs_;
  std::vector<int64_t> offsets_;  // element offsets, shared by params and grads
  std::array<Range, kParamGroups> regions_{};
  std::vector<Buffer> buffers_;
  int64_t total_numel_ = 0, buffer_numel_ = 0;
  bool finalized_ = false;
  using Block = std::unique_ptr<std::byte[], void (*)(std::byte*)>;
  Block params_{nullptr, nullptr}, grads_{nullptr, nullptr}, bufs_{nullptr, nullptr};
};

// The initial value of element `index` of the tensor with global name `name`: N(0, std^2),
// from a counter-based hash of (seed, name, index).
double init_normal(uint64_t seed, const std::string& name, int64_t index, double std);

}  // namespace core
