// CudaState: the CUDA objects of one rank, behind Context::cuda. Included only by code that is
// compiled with the CUDA toolkit (core/cuda/, kernels/cuda/, parallel/cuda/).
//
// Streams are blocking streams (cudaStreamCreate), so the launchers without a context (fill,
// copy, axpy, scale, sum_squares) can use the legacy default stream and stay ordered with them.
// The scratch arena holds per-call device temporaries (ScratchScope); the algorithm cache maps a
// GEMM plan's key to the cuBLASLt algorithm chosen for it once.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/arena.hpp"
#include "core/context.hpp"
#include "core/memory.hpp"

namespace core {

// Codes of the device error word (first bad index wins).
enum class DeviceError : int32_t {
  none = 0,
  token_out_of_range = 1,   // embedding: token outside the table
  target_out_of_range = 2,  // head_ce: target >= vocabulary
  index_out_of_range = 3,   // MoE routing: expert index, src or pos outside its range
  bad_offsets = 4,          // segment offsets not ascending from 0 to the row count
};
const char* device_error_name(DeviceError e);

// The word kernels write: {code, position, value}. Written with atomicCAS on code.
struct DeviceErrorWord {
  int32_t code;
  int32_t pad;
  int64_t position;
  int64_t value;
};

// The cuBLASLt algorithm chosen for one plan, or none (then the SIMT GEMM runs it).
struct LtAlgo {
  bool found = false;
  cublasLtMatmulAlgo_t algo{};
};

struct CudaState {
  int device = 0;
  int sm_count = 0;
  size_t smem_per_block_optin = 0;  // cudaDevAttrMaxSharedMemoryPerBlockOptin
  std::string name;
  cudaStream_t compute = nullptr;
  cudaStream_t comm = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;  // cuBLASLt workspace, 256-byte aligned
  size_t workspace_bytes = 0;
  DeviceErrorWord* errors = nullptr;  // device memory
  std::unique_ptr<MemoryResource> memory;
  std::unique_ptr<BumpArena> scratch;
  std::map<std::string, LtAlgo> algos;
  int64_t lt_fallbacks = 0;  // GEMMs cuBLASLt had no algorithm for (run by the SIMT kernel)
};

// The compute stream of a context (checked to exist).
cudaStream_t compute_stream(const Context& ctx);
CudaState& cuda_state(const Context& ctx);

}  // namespace core
