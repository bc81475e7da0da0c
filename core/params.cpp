// ParamStore layout, allocation and the pure, name-keyed initialization.
#include "core/params.hpp"

#include <xxhash.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.hpp"

namespace core {
namespace {

constexpr int64_t kAlignElems = 16;  // 64 bytes of f32: every tensor starts on a cache line

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void free_block(std::byte* p) { std::free(p); }

std::unique_ptr<std::byte[], void (*)(std::byte*)> zeroed(size_t bytes) {
  bytes = (bytes + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return {static_cast<std::byte*>(p), free_block};
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

template <class T>
void fill_init(T* out, const ParamSpec& s, uint64_t seed) {
  int64_t n = numel_of(s.shape);
  if (s.init != Init::normal) {
    T value = s.init == Init::ones ? T(1) : T(0);
    for (int64_t i = 0; i < n; ++i) out[i] = value;
    return;
  }
  if (s.stack_first < 0) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(init_normal(seed, s.name, i, s.std));
    return;
  }
  int64_t slices = s.shape[0], per = n / slices;
  for (int64_t e = 0; e < slices; ++e) {
    std::string name = s.slice_name(e);
    for (int64_t i = 0; i < per; ++i)
      out[e * per + i] = static_cast<T>(init_normal(seed, name, i, s.std));
  }
}

}  // namespace

std::string ParamSpec::slice_name(int64_t i) const {
  auto at = name.find("{}");
  FLOT_CHECK(stack_first >= 0 && at != std::string::npos, "{} is not a stacked parameter", name);
  return name.substr(0, at) + std::to_string(stack_first + i) + name.substr(at + 2);
}

double init_normal(uint64_t seed, const std::string& name, int64_t index, double std) {
  uint64_t key = XXH3_64bits_withSeed(name.data(), name.size(), seed);
  uint64_t a = mix64(key ^ mix64(2 * static_cast<uint64_t>(index)));
  uint64_t b = mix64(key ^ mix64(2 * static_cast<uint64_t>(index) + 1));
  double u1 = (static_cast<double>(a >> 11) + 0.5) * 0x1.0p-53;  // (0, 1): log is finite
  double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
  return std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

int ParamStore::add(ParamSpec spec) {
  FLOT_CHECK(!finalized_, "parameter {} registered after finalize", spec.name);
  FLOT_CHECK(!spec.shape.empty() && spec.shape.size() <= kMaxDims, "{}: bad rank", spec.name);
  // Stacked slices are experts: their copies live on the expert-data ranks.
  if (spec.stack_first >= 0) spec.group = ParamGroup::expert;
  specs_.push_back(std::move(spec));
  return static_cast<int>(specs_.size()) - 1;
}

int ParamStore::find(const std::string& name) const {
  for (int id = 0; id < size(); ++id)
    if (specs_[id].name == name) return id;
  return -1;
}

int ParamStore::add_buffer(const std::string& name, std::initializer_list<int64_t> shape) {
  FLOT_CHECK(!finalized_, "buffer {} registered after finalize", name);
  buffers_.push_back({name, std::vector<int64_t>(shape), 0});
  return static_cast<int>(buffers_.size()) - 1;
}

void ParamStore::finalize(std::array<int64_t, kParamGroups> pad) {
  FLOT_CHECK(!finalized_, "finalize called twice");
  total_numel_ = 0;
  offsets_.assign(specs_.size(), 0);
  for (int g = 0; g < kParamGroups; ++g) {
    FLOT_CHECK(pad[g] >= 1, "region padding {}", pad[g]);
    regions_[g].begin = total_numel_;
    for (size_t id = 0; id < specs_.size(); ++id) {
      if (static_cast<int>(specs_[id].group) != g) continue;
      offsets_[id] = total_numel_;
      total_numel_ += (numel_of(specs_[id].shape) + kAlignElems - 1) / kAlignElems * kAlignElems;
    }
    const int64_t multiple = pad[g] * kAlignElems;
    total_numel_ = regions_[g].begin +
                   (total_numel_ - regions_[g].begin + multiple - 1) / multiple * multiple;
    regions_[g].end = total_numel_;
  }
  buffer_numel_ = 0;
  for (auto& b : buffers_) {
    b.offset = buffer_numel_;
    buffer_numel_ += (numel_of(b.shape) + kAlignElems - 1) / kAlignElems * kAlignElems;
  }
  params_ = zeroed(total_numel_ * dtype_size(dtype_));
  grads_ = zeroed(total_numel_ * dtype_size(dtype_));
  bufs_ = zeroed(buffer_numel_ * dtype_size(dtype_));
  finalized_ = true;
}

int64_t ParamStore::offset(int id) const {
  FLOT_CHECK(finalized_ && id >= 0 && id < size(), "parameter id {}", id);
  return offsets_[id];
}

int64_t ParamStore::numel_unpadded() const {
  int64_t n = 0;
  for (const auto& s : specs_) n += numel_of(s.shape);
  return n;
}

void ParamStore::init(uint64_t seed) {
  FLOT_CHECK(finalized_, "init before finalize");
  for (int id = 0; id < size(); ++id) {
    Tensor p = param(id);
    if (dtype_ == DType::f32)
      fill_init(p.ptr<float>(), specs_[id], seed);
    else
      fill_init(p.ptr<double>(), specs_[id], seed);
  }
  std::memset(bufs_.get(), 0, buffer_numel_ * dtype_size(dtype_));
}

Tensor ParamStore::view(std::byte* base, DType dt, int id) const {
  FLOT_CHECK(finalized_ && id >= 0 && id < size(), "parameter id {}", id);
  const auto& s = specs_[id];
  Tensor t;
  t.data = base + offsets_[id] * dtype_size(dt);
  t.dtype = dt;
  t.ndim = static_cast<int>(s.shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = s.shape[i];
  return t;
}

Tensor ParamStore::buffer(int id) const {
  FLOT_CHECK(finalized_ && id >= 0 && id < num_buffers(), "buffer id {}", id);
  const auto& b = buffers_[id];
  Tensor t;
  t.data = bufs_.get() + b.offset * dtype_size(dtype_);
  t.dtype = dtype_;
  t.ndim = static_cast<int>(b.shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = b.shape[i];
  return t;
}

Tensor ParamStore::flat_params() const { return Tensor(params_.get(), dtype_, {total_numel_}); }
Tensor ParamStore::flat_grads() const { return Tensor(grads_.get(), dtype_, {total_numel_}); }

void ParamStore::zero_grads() { std::memset(grads_.get(), 0, total_numel_ * dtype_size(dtype_)); }

}  // namespace core
