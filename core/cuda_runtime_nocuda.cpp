// CudaRuntime in a build without the CUDA backend: availability says why, construction refuses.
#include "core/cuda_runtime.hpp"
#include "core/error.hpp"

namespace core {

struct CudaState {};

CudaAvailability cuda_availability() {
  return {false, 0,
          "this binary was built without the CUDA backend (no CUDA toolkit found at configure "
          "time, or FLOTILLA_CUDA=OFF)"};
}

BumpArena& device_scratch(const Context&) {
  FLOT_THROW(InternalError, "device_scratch: this binary has no CUDA backend");
}

CudaRuntime::CudaRuntime(const CudaOptions&) {
  FLOT_THROW(ConfigError, "runtime.device = cuda: {}; rebuild with the CUDA toolkit installed",
             cuda_availability().reason);
}
CudaRuntime::~CudaRuntime() = default;
void CudaRuntime::attach(Context&) {}
CudaState& CudaRuntime::state() {
  return *state_;
}
int CudaRuntime::device() const {
  return -1;
}
std::string CudaRuntime::describe() const {
  return "no CUDA backend";
}
MemoryResource& CudaRuntime::memory() {
  return host_memory();
}
void CudaRuntime::synchronize() {}
void CudaRuntime::raise_device_errors() {}
int64_t CudaRuntime::lt_fallbacks() const {
  return 0;
}

}  // namespace core
