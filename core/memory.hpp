// MemoryResource: where an arena's blocks come from. Host memory is the default; the CUDA backend
// supplies one over cudaMalloc (core/cuda/), so the arenas, not the layers, decide where tensors
// live, and CPU code never includes a CUDA header.
//
// Invariants: allocate() returns memory aligned to alignment() or throws (std::bad_alloc for
// host memory, core::InternalError naming the CUDA error for device memory); deallocate() never
// throws; zero() fills bytes with 0 (for device memory: ordered on the resource's stream).
#pragma once

#include <cstddef>

#include "core/dtype.hpp"

namespace core {

class MemoryResource {
 public:
  virtual ~MemoryResource() = default;
  virtual Device device() const = 0;
  // Alignment of allocate() and of every tensor an arena carves out of a block.
  virtual size_t alignment() const = 0;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) noexcept = 0;
  virtual void zero(void* p, size_t bytes) = 0;
};

// The process's host memory (std::aligned_alloc, 64-byte aligned). Stateless.
MemoryResource& host_memory();

}  // namespace core
