// Context: the runtime state that ops, layers and the trainer share, passed explicitly.
//
// Holds what would otherwise be globals: the thread count, the communicator (parallel/), and for
// runtime.device = cuda the rank's CUDA state (streams, events, cuBLASLt handle, workspace,
// device arenas). CudaState is only forward-declared here so that CPU code never includes a CUDA
// header; it is defined in core/cuda/cuda_state.hpp and owned by a core::CudaRuntime
// (core/cuda_runtime.hpp). One context per process; created by launch/ after the config is valid.
#pragma once

#include <cstdint>

#include "core/dtype.hpp"

namespace parallel {
class Communicator;
}

namespace core {

struct CudaState;

struct Context {
  int threads = 1;                          // OpenMP / Eigen threads of this rank
  parallel::Communicator* comm = nullptr;   // world communicator; single-process by default
  int rank = 0;
  int world_size = 1;
  int local_size = 1;                       // processes on this node (they share its memory)
  Device device = Device::cpu;  // where this rank's tensors live
  CudaState* cuda = nullptr;    // set (with device = cuda) by a CudaRuntime
};

// Applies ctx.threads to OpenMP and Eigen (0 = leave as is). Called once at start-up and by tests.
void apply_threads(const Context& ctx);

}  // namespace core
