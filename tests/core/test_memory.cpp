// Memory resources and the CUDA runtime's host-side rules, without a GPU: arenas take their
// blocks from the resource they are given (tagging tensors with its device, honouring its
// alignment, returning every block), device selection from the local rank, and the availability
// report of this build.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>

#include "core/arena.hpp"
#include "core/cuda_runtime.hpp"
#include "core/error.hpp"

namespace {

// Host memory that claims to be a GPU's, counting what is live.
class FakeDevice : public core::MemoryResource {
 public:
  core::Device device() const override { return core::Device::cuda; }
  size_t alignment() const override { return 256; }
  void* allocate(size_t bytes) override {
    void* p = std::aligned_alloc(256, bytes);
    live[p] = bytes;
    ++allocations;
    return p;
  }
  void deallocate(void* p, size_t bytes) noexcept override {
    if (live.count(p) && live[p] == bytes) live.erase(p);
    std::free(p);
  }
  void zero(void* p, size_t bytes) override {
    ++zeroed;
    std::memset(p, 0, bytes);
  }
  std::map<void*, size_t> live;
  int allocations = 0, zeroed = 0;
};

}  // namespace

TEST_CASE("arenas over a device resource tag, align and return their blocks", "[memory]") {
  FakeDevice dev;
  {
    core::BumpArena arena(0, &dev);
    CHECK(arena.device() == core::Device::cuda);
    core::Tensor a = arena.alloc(core::DType::f32, {3});
    core::Tensor b = arena.zeros(core::DType::bf16, {5, 7});
    CHECK(a.device == core::Device::cuda);
    CHECK(b.device == core::Device::cuda);
    CHECK(reinterpret_cast<uintptr_t>(a.data) % 256 == 0);
    CHECK(reinterpret_cast<uintptr_t>(b.data) % 256 == 0);
    CHECK(static_cast<char*>(b.data) - static_cast<char*>(a.data) == 256);
    CHECK(dev.zeroed == 1);
    arena.alloc(core::DType::f32, {1 << 20});  // a second block
    CHECK(dev.live.size() == 2);
    arena.reset();  // folded into one block of the high-water size
    CHECK(dev.live.size() == 1);
    const int before = dev.allocations;
    arena.alloc(core::DType::f32, {3});
    arena.alloc(core::DType::f32, {1 << 20});
    CHECK(dev.allocations == before);  // steady state: nothing allocated
    // Outgrown again: the sizes vary, so the second fold keeps an eighth more than the high water
    // and a slightly larger micro-batch after it allocates nothing.
    arena.alloc(core::DType::f32, {1 << 18});
    arena.reset();
    const size_t high = arena.high_water();
    CHECK(arena.capacity() >= high + high / 8);
    CHECK(arena.capacity() < high + high / 8 + 256);
    const int refolded = dev.allocations;
    arena.alloc(core::DType::f32, {3});
    arena.alloc(core::DType::f32, {(1 << 20) + (1 << 18) + (1 << 16)});
    arena.reset();
    CHECK(dev.allocations == refolded);

    core::GrowBuffer grow(&dev);
    CHECK(grow.view(core::DType::f32, {10}).device == core::Device::cuda);
    grow.view(core::DType::f32, {100000});  // grows: the old block goes back first
    CHECK(dev.live.size() == 2);
  }
  CHECK(dev.live.empty());
}

TEST_CASE("host arenas keep 64-byte alignment and the CPU device", "[memory]") {
  core::BumpArena arena;
  core::Tensor a = arena.alloc(core::DType::f32, {1});
  core::Tensor b = arena.alloc(core::DType::f32, {1});
  CHECK(a.device == core::Device::cpu);
  CHECK(static_cast<char*>(b.data) - static_cast<char*>(a.data) == 64);
  CHECK(core::host_memory().alignment() == 64);
}

TEST_CASE("one GPU per rank: the device is the local rank", "[memory][cuda]") {
  CHECK(core::select_device(0, 1, 1) == 0);
  CHECK(core::select_device(3, 8, 8) == 3);
  CHECK_THROWS_AS(core::select_device(0, 1, 0), core::ConfigError);
  CHECK_THROWS_WITH(core::select_device(1, 4, 2),
                    Catch::Contains("4 processes") && Catch::Contains("only 2 CUDA devices"));
  CHECK_THROWS_AS(core::select_device(2, 2, 4), core::ConfigError);
}

TEST_CASE("CUDA availability says why nothing runs on a GPU", "[memory][cuda]") {
  const core::CudaAvailability a = core::cuda_availability();
  if (a.devices == 0) {
    CHECK(!a.reason.empty());
    CHECK_THROWS_AS(core::CudaRuntime(core::CudaOptions{}), core::ConfigError);
  }
#ifndef FLOTILLA_HAVE_CUDA
  CHECK_FALSE(a.built);
#else
  CHECK(a.built);
#endif
}
