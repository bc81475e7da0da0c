// BumpArena: block allocation, reset with consolidation, mark / rewind.
#include "core/arena.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace core {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kMinBlock = size_t(1) << 20;

size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

void free_block(std::byte* p) { std::free(p); }

std::unique_ptr<std::byte[], void (*)(std::byte*)> new_block(size_t bytes) {
  void* p = std::aligned_alloc(kAlign, round_up(bytes));
  if (!p) throw std::bad_alloc();
  return {static_cast<std::byte*>(p), free_block};
}

}  // namespace

BumpArena::BumpArena(size_t initial_bytes) {
  if (initial_bytes > 0) blocks_.push_back({new_block(initial_bytes), round_up(initial_bytes)});
}

void* BumpArena::take(size_t bytes) {
  bytes = round_up(bytes == 0 ? kAlign : bytes);
  while (current_ < blocks_.size() && offset_ + bytes > blocks_[current_].size) {
    ++current_;
    offset_ = 0;
  }
  if (current_ == blocks_.size()) {
    size_t size = std::max(bytes, std::max(kMinBlock, capacity() / 2));
    blocks_.push_back({new_block(size), round_up(size)});
    offset_ = 0;
  }
  void* p = blocks_[current_].data.get() + offset_;
  offset_ += bytes;
  used_total_ += bytes;
  if (used_total_ > high_water_) high_water_ = used_total_;
  return p;
}

Tensor BumpArena::alloc(DType dtype, std::initializer_list<int64_t> dims) {
  Tensor t(nullptr, dtype, dims);
  t.data = take(t.bytes());
  return t;
}

Tensor BumpArena::zeros(DType dtype, std::initializer_list<int64_t> dims) {
  Tensor t = alloc(dtype, dims);
  std::memset(t.data, 0, t.bytes());
  return t;
}

void BumpArena::reset() {
  // More than one block means the first steps outgrew the arena: replace them with one block that
  // holds the high-water mark, so later steps neither allocate nor fragment.
  if (blocks_.size() > 1) {
    blocks_.clear();
    blocks_.push_back({new_block(high_water_), round_up(high_water_)});
  }
  current_ = 0;
  offset_ = 0;
  used_total_ = 0;
}

void BumpArena::rewind(Mark m) {
  current_ = m.block;
  offset_ = m.offset;
  used_total_ = m.used;
}

size_t BumpArena::capacity() const {
  size_t c = 0;
  for (const auto& b : blocks_) c += b.size;
  return c;
}

Tensor GrowBuffer::view(DType dtype, std::initializer_list<int64_t> dims) {
  Tensor t(nullptr, dtype, dims);
  if (t.bytes() > size_ || !data_) {
    // some headroom: routing, and so the size, varies from step to step
    size_ = round_up(std::max<size_t>(kAlign, t.bytes() + t.bytes() / 4));
    data_ = new_block(size_);
  }
  t.data = data_.get();
  return t;
}

}  // namespace core
