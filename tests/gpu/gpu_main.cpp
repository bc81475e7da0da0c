// Catch2 main of the GPU tests. Without a usable CUDA device (no GPU, no driver, or a binary built
// without the CUDA backend) nothing runs: the binary prints "SKIPPED: <why>" and exits with 77,
// which CTest reports as "Skipped" (SKIP_RETURN_CODE), never as a pass. With
// FLOTILLA_REQUIRE_GPU=1 (tests/gpu/device_check.sh sets it) a missing device is a failure
// instead, so a GPU machine whose driver broke fails loudly.
//
// --check-gpus N: exit 0 when at least N devices are usable, 77 otherwise (the multi-rank NCCL
// tests call it before mpirun).
#include "catch_session.hpp"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "gpu_testing.hpp"

namespace gpu_testing {
namespace {
core::CudaRuntime* g_runtime = nullptr;
core::Context g_ctx;
}  // namespace
core::CudaRuntime& runtime() {
  return *g_runtime;
}
core::Context& ctx() {
  return g_ctx;
}
}  // namespace gpu_testing

int main(int argc, char** argv) {
  const core::CudaAvailability a = core::cuda_availability();
  if (argc == 3 && std::strcmp(argv[1], "--check-gpus") == 0) {
    const int need = std::atoi(argv[2]);
    if (a.devices >= need) return 0;
    std::printf("SKIPPED: needs %d CUDA devices, %d usable (%s)\n", need, a.devices,
                a.reason.c_str());
    return 77;
  }
  // Listing the tests runs none: allowed anywhere.
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) return testing::run_catch(argc, argv);
  const char* require = std::getenv("FLOTILLA_REQUIRE_GPU");
  if (a.devices == 0) {
    if (require && std::strcmp(require, "1") == 0) {
      std::fprintf(stderr, "FAILED: FLOTILLA_REQUIRE_GPU=1 but no usable CUDA device: %s\n",
                   a.reason.c_str());
      return 1;
    }
    std::printf("SKIPPED: no usable CUDA device (%s); no GPU test ran\n", a.reason.c_str());
    return 77;
  }
  std::unique_ptr<core::CudaRuntime> rt;
  try {
    rt = std::make_unique<core::CudaRuntime>(core::CudaOptions{});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: a CUDA device is visible but the runtime did not start: %s\n",
                 e.what());
    return 1;
  }
  rt->attach(gpu_testing::g_ctx);
  gpu_testing::g_ctx.threads = 1;
  gpu_testing::g_runtime = rt.get();
  std::printf("GPU tests on %s\n", rt->describe().c_str());
  const int rc = testing::run_catch(argc, argv);
  gpu_testing::g_runtime = nullptr;
  return rc;
}
