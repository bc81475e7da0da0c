// The CUDA runtime of one rank, seen from CPU code: which device the rank uses, its memory, its
// streams (inside CudaState), and the device-side error word. No CUDA header is included here, so
// launch/ and the tests use it in every build; in a build without the CUDA backend
// (FLOTILLA_CUDA=OFF or no toolkit) cuda_availability() says so and CudaRuntime's constructor
// throws a ConfigError naming the reason.
//
// One CudaRuntime per process, created after the config is valid; it owns the CudaState that
// Context::cuda points at (attach()). Streams: one for compute, one for communication (the
// NCCL communicator orders them with events). Memory: cudaMalloc only, never managed memory.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "core/arena.hpp"
#include "core/context.hpp"
#include "core/memory.hpp"

namespace core {

// What this binary and this machine offer. Never throws.
struct CudaAvailability {
  bool built = false;  // the binary contains the CUDA backend
  int devices = 0;     // CUDA devices visible to this process
  std::string reason;  // why devices is 0 ("built without CUDA", the driver's error, ...)
};
CudaAvailability cuda_availability();

// The device a rank uses: its local rank, one GPU per rank. Throws ConfigError when the node has
// fewer devices than ranks (two ranks on one GPU cannot share an NCCL communicator) or none.
int select_device(int local_rank, int local_size, int device_count);

struct CudaOptions {
  int local_rank = 0;
  int local_size = 1;
  size_t workspace_bytes = size_t(64)
                           << 20;  // cuBLASLt workspace (Hopper kernels use up to 32 MiB)
};

// The device scratch arena of a CUDA context: temporaries of one call (use a ScratchScope).
BumpArena& device_scratch(const Context& ctx);

class CudaRuntime {
 public:
  // Selects the device, creates the streams, the cuBLASLt handle, the workspace and the error
  // word. Throws ConfigError when this build or this machine has no usable device.
  explicit CudaRuntime(const CudaOptions& options);
  ~CudaRuntime();
  CudaRuntime(const CudaRuntime&) = delete;
  CudaRuntime& operator=(const CudaRuntime&) = delete;

  // ctx.device = cuda and ctx.cuda = this runtime's state.
  void attach(Context& ctx);
  CudaState& state();
  int device() const;
  // "NVIDIA H200 (device 0, sm_90, 132 SMs, 139.8 GiB)".
  std::string describe() const;
  // Device memory (cudaMalloc, 256-byte aligned), for BumpArena / GrowBuffer.
  MemoryResource& memory();
  // Waits for both streams.
  void synchronize();
  // Kernels that meet a bad index (a token outside the vocabulary, a plan outside its rows)
  // record the first one in a device word and skip the write instead of corrupting memory. This
  // synchronizes, throws InternalError naming the op and the value if one was recorded, and
  // clears the word.
  void raise_device_errors();
  // GEMMs cuBLASLt had no algorithm for (run by the SIMT kernel instead) since start-up.
  int64_t lt_fallbacks() const;

 private:
  std::unique_ptr<CudaState> state_;
};

}  // namespace core
