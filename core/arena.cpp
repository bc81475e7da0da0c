// BumpArena: block allocation, reset with consolidation, mark / rewind.
#include "core/arena.hpp"

#include <algorithm>

namespace core {
namespace {

constexpr size_t kMinBlock = size_t(1) << 20;

size_t round_up(size_t n, size_t align) {
  return (n + align - 1) / align * align;
}

BlockPtr new_block(MemoryResource* mem, size_t bytes) {
  bytes = round_up(bytes, mem->alignment());
  return BlockPtr(static_cast<std::byte*>(mem->allocate(bytes)), BlockFree{mem, bytes});
}

}  // namespace

BumpArena::BumpArena(size_t initial_bytes, MemoryResource* mem) : mem_(mem ? mem : &host_memory()) {
  if (initial_bytes > 0) add_block(initial_bytes);
}

void BumpArena::add_block(size_t bytes) {
  blocks_.push_back({new_block(mem_, bytes), round_up(bytes, mem_->alignment())});
}

void* BumpArena::take(size_t bytes) {
  const size_t align = mem_->alignment();
  bytes = round_up(bytes == 0 ? align : bytes, align);
  while (current_ < blocks_.size() && offset_ + bytes > blocks_[current_].size) {
    ++current_;
    offset_ = 0;
  }
  if (current_ == blocks_.size()) {
    add_block(std::max(bytes, std::max(kMinBlock, capacity() / 2)));
    offset_ = 0;
  }
  void* p = blocks_[current_].data.get() + offset_;
  offset_ += bytes;
  used_total_ += bytes;
  if (used_total_ > high_water_) high_water_ = used_total_;
  return p;
}

Tensor BumpArena::alloc(DType dtype, std::initializer_list<int64_t> dims) {
  Tensor t(nullptr, dtype, dims, mem_->device());
  t.data = take(t.bytes());
  return t;
}

Tensor BumpArena::zeros(DType dtype, std::initializer_list<int64_t> dims) {
  Tensor t = alloc(dtype, dims);
  mem_->zero(t.data, t.bytes());
  return t;
}

void BumpArena::reset() {
  // More than one block means the first steps outgrew the arena: replace them with one block that
  // holds the high-water mark, so later steps neither allocate nor fragment; with headroom from the
  // second fold on, when the sizes have shown that they vary.
  if (blocks_.size() > 1) {
    blocks_.clear();
    add_block(folded_ ? high_water_ + high_water_ / 8 : high_water_);
    folded_ = true;
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

GrowBuffer::GrowBuffer(MemoryResource* mem) : mem_(mem ? mem : &host_memory()) {}

Tensor GrowBuffer::view(DType dtype, std::initializer_list<int64_t> dims) {
  Tensor t(nullptr, dtype, dims, mem_->device());
  if (t.bytes() > size_ || !data_) {
    // some headroom: routing, and so the size, varies from step to step
    size_ = round_up(std::max(mem_->alignment(), t.bytes() + t.bytes() / 4), mem_->alignment());
    data_.reset();  // the old block goes back before the new one is taken
    data_ = new_block(mem_, size_);
  }
  t.data = data_.get();
  return t;
}

}  // namespace core
