// Arenas: memory for tensors, allocated in few large blocks instead of per tensor.
//
// BumpArena hands out tensors from large blocks and frees them all at once with reset(). It backs
// the per-micro-batch activation slots (everything a layer saves between forward and backward)
// and per-call workspaces. The first micro-batch sizes it; reset() then folds the blocks into one
// of the high-water size, so steady-state steps allocate nothing. An arena that outgrows its folded
// block again holds micro-batches of varying size (with expert parallelism a rank receives as many
// rows as the routing sends it), so the next fold keeps an eighth more: every fold hands back the
// block and faults in a fresh one, which for an activation slot of hundreds of MiB cost a 2-rank
// bench-cpu run about 1.5 s of kernel time per step when it happened on most micro-batches.
//
// Blocks come from a MemoryResource (core/memory.hpp): host memory by default, device memory
// (cudaMalloc) for a CUDA arena. Tensors carry the resource's device; alignment is the
// resource's (64 bytes on the host, 256 on a GPU: what cuBLASLt asks of its operands).
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <vector>

#include "core/memory.hpp"
#include "core/tensor.hpp"

namespace core {

// A block of a MemoryResource, returned to it on destruction.
struct BlockFree {
  MemoryResource* mem = nullptr;
  size_t bytes = 0;
  void operator()(std::byte* p) const noexcept { mem->deallocate(p, bytes); }
};
using BlockPtr = std::unique_ptr<std::byte[], BlockFree>;

class BumpArena {
 public:
  // mem = nullptr: host memory. The resource must outlive the arena.
  explicit BumpArena(size_t initial_bytes = 0, MemoryResource* mem = nullptr);
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
  Device device() const { return mem_->device(); }

 private:
  struct Block {
    BlockPtr data;
    size_t size = 0;
  };
  void* take(size_t bytes);
  void add_block(size_t bytes);
  MemoryResource* mem_;
  std::vector<Block> blocks_;
  size_t current_ = 0;  // block being filled
  size_t offset_ = 0;   // bytes used in it
  size_t used_total_ = 0, high_water_ = 0;
  bool folded_ = false;  // reset() has folded blocks before
};

// GrowBuffer: one block that only grows, for memory whose size is known only on another thread:
// the receiving end of an expert dispatch is sized on the communication thread when the counts
// arrive. It keeps its high-water size, so steady-state steps allocate nothing. The caller owns
// the synchronization (the communication thread alone touches it while the exchange is in flight).
class GrowBuffer {
 public:
  // mem = nullptr: host memory. The resource must outlive the buffer.
  explicit GrowBuffer(MemoryResource* mem = nullptr);
  // A view of this shape at the start of the buffer (contents undefined), grown if needed.
  Tensor view(DType dtype, std::initializer_list<int64_t> dims);
  size_t capacity() const { return size_; }

 private:
  MemoryResource* mem_;
  BlockPtr data_;
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
