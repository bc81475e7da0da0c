// FLOT_CUDA and FLOT_CUBLAS: the CUDA members of the check-macro family (FLOT_MPI in
// parallel/mpi_check.hpp, FLOT_NCCL in parallel/cuda/nccl_check.hpp). A failing call throws
// core::InternalError with the expression, the library's error name and text, the device and
// file:line; launch/ turns it into exit 1, or ends the whole job once communication has started.
// FLOT_CUDA_LAUNCH() checks the kernel launch just made (bad configurations, missing images).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "core/error.hpp"

namespace core::cuda_detail {
[[noreturn]] void cuda_failed(const char* call, cudaError_t code, const char* where);
[[noreturn]] void cublas_failed(const char* call, cublasStatus_t code, const char* where);
}  // namespace core::cuda_detail

#define FLOT_CUDA(call)                                                   \
  do {                                                                    \
    cudaError_t flot_cuda_rc_ = (call);                                   \
    if (flot_cuda_rc_ != cudaSuccess)                                     \
      ::core::cuda_detail::cuda_failed(#call, flot_cuda_rc_, FLOT_WHERE); \
  } while (0)

#define FLOT_CUBLAS(call)                                                     \
  do {                                                                        \
    cublasStatus_t flot_cublas_rc_ = (call);                                  \
    if (flot_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                             \
      ::core::cuda_detail::cublas_failed(#call, flot_cublas_rc_, FLOT_WHERE); \
  } while (0)

#define FLOT_CUDA_LAUNCH() FLOT_CUDA(cudaGetLastError())
