// CudaRuntime over the CUDA runtime API: device selection, streams, cuBLASLt handle, workspace,
// device memory resource and the device error word.
#include "core/cuda_runtime.hpp"

#include <fmt/format.h>

#include "core/cuda/cuda_check.hpp"
#include "core/cuda/cuda_state.hpp"

namespace core {

namespace cuda_detail {

void cuda_failed(const char* call, cudaError_t code, const char* where) {
  int dev = -1;
  cudaGetDevice(&dev);
  throw InternalError(fmt::format("CUDA call {} failed: {} ({}) on device {} at {}", call,
                                  cudaGetErrorName(code), cudaGetErrorString(code), dev, where));
}

void cublas_failed(const char* call, cublasStatus_t code, const char* where) {
  int dev = -1;
  cudaGetDevice(&dev);
  throw InternalError(fmt::format("cuBLAS call {} failed: {} ({}) on device {} at {}", call,
                                  cublasLtGetStatusName(code), cublasLtGetStatusString(code), dev,
                                  where));
}

}  // namespace cuda_detail

namespace {

// cudaMalloc'ed blocks; zero() is ordered on the compute stream like every kernel.
class DeviceMemory : public MemoryResource {
 public:
  DeviceMemory(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  Device device() const override { return Device::cuda; }
  size_t alignment() const override { return 256; }
  void* allocate(size_t bytes) override {
    void* p = nullptr;
    FLOT_CUDA(cudaSetDevice(device_));
    FLOT_CUDA(cudaMalloc(&p, bytes == 0 ? 256 : bytes));
    return p;
  }
  void deallocate(void* p, size_t) noexcept override {
    // cudaFree synchronizes the device, so a block still read by a queued kernel is safe.
    if (p) cudaFree(p);
  }
  void zero(void* p, size_t bytes) override {
    if (bytes) FLOT_CUDA(cudaMemsetAsync(p, 0, bytes, stream_));
  }

 private:
  int device_;
  cudaStream_t stream_;
};

}  // namespace

const char* device_error_name(DeviceError e) {
  switch (e) {
    case DeviceError::none:
      return "none";
    case DeviceError::token_out_of_range:
      return "embedding: token outside the table";
    case DeviceError::target_out_of_range:
      return "head_ce: target outside the vocabulary";
    case DeviceError::index_out_of_range:
      return "MoE routing: index outside its range";
    case DeviceError::bad_offsets:
      return "grouped op: segment offsets not ascending to the rows";
  }
  return "unknown device error";
}

CudaState& cuda_state(const Context& ctx) {
  FLOT_CHECK(ctx.cuda != nullptr && ctx.device == Device::cuda,
             "a CUDA op ran with a context that has no CUDA runtime attached "
             "(core::CudaRuntime::attach)");
  return *ctx.cuda;
}

cudaStream_t compute_stream(const Context& ctx) {
  return cuda_state(ctx).compute;
}

BumpArena& device_scratch(const Context& ctx) {
  return *cuda_state(ctx).scratch;
}

CudaAvailability cuda_availability() {
  CudaAvailability a;
  a.built = true;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // not sticky, but leave no error behind for the next check
    a.reason = fmt::format("cudaGetDeviceCount failed: {} ({})", cudaGetErrorName(e),
                           cudaGetErrorString(e));
    return a;
  }
  a.devices = n;
  if (n == 0) a.reason = "the CUDA driver reports no device";
  return a;
}

CudaRuntime::CudaRuntime(const CudaOptions& o) : state_(std::make_unique<CudaState>()) {
  const CudaAvailability a = cuda_availability();
  if (a.devices == 0)
    FLOT_THROW(ConfigError, "runtime.device = cuda but no usable CUDA device: {}", a.reason);
  CudaState& s = *state_;
  s.device = select_device(o.local_rank, o.local_size, a.devices);
  FLOT_CUDA(cudaSetDevice(s.device));
  cudaDeviceProp p{};
  FLOT_CUDA(cudaGetDeviceProperties(&p, s.device));
  s.name = p.name;
  s.sm_count = p.multiProcessorCount;
  int optin = 0;
  FLOT_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, s.device));
  s.smem_per_block_optin = static_cast<size_t>(optin);
  if (p.major < 9)
    FLOT_THROW(ConfigError,
               "device {} ({}) has compute capability {}.{}; the CUDA backend targets Hopper "
               "(sm_90) and newer: FP8 block scaling needs it",
               s.device, p.name, p.major, p.minor);
  FLOT_CUDA(cudaStreamCreate(&s.compute));
  FLOT_CUDA(cudaStreamCreate(&s.comm));
  FLOT_CUBLAS(cublasLtCreate(&s.lt));
  s.workspace_bytes = o.workspace_bytes;
  FLOT_CUDA(cudaMalloc(&s.workspace, s.workspace_bytes));
  FLOT_CUDA(cudaMalloc(reinterpret_cast<void**>(&s.errors), sizeof(DeviceErrorWord)));
  FLOT_CUDA(cudaMemset(s.errors, 0, sizeof(DeviceErrorWord)));
  s.memory = std::make_unique<DeviceMemory>(s.device, s.compute);
  s.scratch = std::make_unique<BumpArena>(0, s.memory.get());
}

CudaRuntime::~CudaRuntime() {
  if (!state_) return;
  CudaState& s = *state_;
  // Destructors never throw: errors here are ignored, the process is ending.
  if (s.compute) cudaStreamSynchronize(s.compute);
  if (s.comm) cudaStreamSynchronize(s.comm);
  s.scratch.reset();
  if (s.errors) cudaFree(s.errors);
  if (s.workspace) cudaFree(s.workspace);
  if (s.lt) cublasLtDestroy(s.lt);
  if (s.comm) cudaStreamDestroy(s.comm);
  if (s.compute) cudaStreamDestroy(s.compute);
}

void CudaRuntime::attach(Context& ctx) {
  ctx.device = Device::cuda;
  ctx.cuda = state_.get();
}

CudaState& CudaRuntime::state() {
  return *state_;
}
int CudaRuntime::device() const {
  return state_->device;
}

std::string CudaRuntime::describe() const {
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  return fmt::format("{} (device {}, {} SMs, {:.1f} GiB)", state_->name, state_->device,
                     state_->sm_count, total_b / double(1 << 30));
}

MemoryResource& CudaRuntime::memory() {
  return *state_->memory;
}

void CudaRuntime::synchronize() {
  FLOT_CUDA(cudaStreamSynchronize(state_->compute));
  FLOT_CUDA(cudaStreamSynchronize(state_->comm));
}

int64_t CudaRuntime::lt_fallbacks() const {
  return state_->lt_fallbacks;
}

void CudaRuntime::raise_device_errors() {
  synchronize();
  DeviceErrorWord w{};
  FLOT_CUDA(cudaMemcpy(&w, state_->errors, sizeof(w), cudaMemcpyDeviceToHost));
  if (w.code == 0) return;
  FLOT_CUDA(cudaMemset(state_->errors, 0, sizeof(DeviceErrorWord)));
  throw InternalError(fmt::format("a CUDA kernel found bad input: {} (value {} at position {})",
                                  device_error_name(static_cast<DeviceError>(w.code)), w.value,
                                  w.position));
}

}  // namespace core
