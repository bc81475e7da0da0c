// Host memory resource: aligned_alloc / free / memset.
#include "core/memory.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

namespace core {
namespace {

class HostMemory : public MemoryResource {
 public:
  static constexpr size_t kAlign = 64;
  Device device() const override { return Device::cpu; }
  size_t alignment() const override { return kAlign; }
  void* allocate(size_t bytes) override {
    void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* p, size_t) noexcept override { std::free(p); }
  void zero(void* p, size_t bytes) override { std::memset(p, 0, bytes); }
};

}  // namespace

MemoryResource& host_memory() {
  static HostMemory host;
  return host;
}

}  // namespace core
