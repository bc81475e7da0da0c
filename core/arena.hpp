// Arenas: memory for tensors, allocated in few large blocks instead of per tensor.
//
// BumpArena hands out tensors from large blocks and frees them all at once with reset(). It backs
// the per-micro-batch activation slots (everything a layer saves between forward and backward)
// and per-call workspaces. The first micro-batch sizes it; reset() then folds the blocks into one
// of the high-water size, so steady-state steps allocate nothing.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <vector>

#include "core/tensor.hpp"

namespace core {

class BumpArena {
 public:
  explicit BumpArena(size_t initial_bytes = 0);
  BumpArena(const BumpArena&) = delete;
  BumpArena& operator=(const BumpArena&) = delete;
  BumpArena(BumpArena&&) = default;
  BumpArena& operator=(BumpArena&&) = default;

  // A tensor of this shape, 64-byte aligned, contents undefined.
  Tensor alloc(DType dtype, std::initializer_list<int64_t> dims);
  // Same, zero-filled.
  Tensor zeros(DType dtype, std::initializer_list<int64_t> dims);
  // Releases everything handed out since construction or the last reset.
  void reset();
  // Marks and rewinds, for scratch memory whose lifetime is one call.
  struct Mark {
    size_t block, offset, used;
  };
  Mark mark() const { return {current_, offset_, used_total_}; }
  void rewind(Mark m);

  size_t capacity() const;
  size_t high_water() const { return high_water_; }

 private:
  struct Block {
    std::unique_ptr<std::byte[], void (*)(std::byte*)> data{nullptr, nullptr};
    size_t size = 0;
  };
  void* take(size_t bytes);
  std::vector<Block> blocks_;
  size_t current_ = 0;  // block being filled
  size_t offset_ = 0;   // bytes used in it
  size_t used_total_ = 0, high_water_ = 0;
};

// GrowBuffer: one block that only grows, for memory whose size is known only on another thread:
// the receiving end of an expert dispatch is sized on the communication thread when the counts
// arrive. It keeps its high-water size, so steady-state steps allocate nothing. The caller owns
// the synchronization (the communication thread alone touches it while the exchange is in flight).
class GrowBuffer {
 public:
  // A view of this shape at the start of the buffer (contents undefined), grown if needed.
  Tensor view(DType dtype, std::initializer_list<int64_t> dims);
  size_t capacity() const { return size_; }

 private:
  std::unique_ptr<std::byte[], void (*)(std::byte*)> data_{nullptr, nullptr};
  size_t size_ = 0;
};

// Scoped scratch: everything allocated from `arena` inside the scope is released at its end.
class ScratchScope {
 public:
  explicit ScratchScope(BumpArena& arena) : arena_(arena), mark_(arena.mark()) {}
  ~ScratchScope() { arena_.rewind(mark_); }
  ScratchScope(const ScratchScope&) = delete;
  ScratchScope& operator=(const ScratchScope&) = delete;

 private:
  BumpArena& arena_;
  BumpArena::Mark mark_;
};

}  // namespace core
