// The CUDA runtime itself: device arenas hand out device tensors and reuse their blocks, the
// error word reports and clears, copies round-trip, and both streams drain.
#include "gpu_testing.hpp"

using namespace gpu_testing;

TEST_CASE("gpu runtime: device arenas, copies and the error word", "[gpu][runtime]") {
  CHECK(ctx().device == core::Device::cuda);
  CHECK(ctx().cuda != nullptr);
  core::BumpArena arena(0, &runtime().memory());
  Tensor t = arena.zeros(DType::f32, {1000, 3});
  CHECK(t.device == core::Device::cuda);
  CHECK(reinterpret_cast<uintptr_t>(t.data) % 256 == 0);
  CHECK(download<float>(t) == std::vector<float>(3000, 0.0f));
  std::vector<float> big = random(1 << 22, 1);
  arena.alloc(DType::f32, {1 << 22});  // outgrows the first block
  arena.reset();                       // folds into one block of the high-water size
  const size_t cap = arena.capacity();
  Device dev;
  Tensor d = dev.upload(big, {1 << 22});
  CHECK(download<float>(d) == big);
  arena.alloc(DType::f32, {1000, 3});
  arena.alloc(DType::f32, {1 << 22});
  CHECK(arena.capacity() == cap);
  runtime().synchronize();
  runtime().raise_device_errors();  // nothing recorded: no throw
  CHECK(!runtime().describe().empty());
}
