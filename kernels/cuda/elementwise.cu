// Elementwise ops on the GPU: fill, copy, axpy, scale, sum_squares (legacy default stream: these
// launchers have no context, and the default stream is ordered with the blocking compute stream)
// and the f32 <-> bf16 cast (compute stream).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device_utils.hpp"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace {

__global__ void fill_kernel(float* x, int64_t n, float v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = v;
}

__global__ void axpy_kernel(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += a * x[i];
}

__global__ void scale_kernel(float* x, int64_t n, float a) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= a;
}

// Per-block partial sums of squares in double (fixed grid, so the result is deterministic).
__global__ void sum_squares_partial(const float* x, int64_t n, double* partial) {
  double s = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double v = x[i];
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void f32_to_bf16_kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = bf16_bits(x[i]);
}

__global__ void bf16_to_f32_kernel(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = bf16_value(x[i]);
}

constexpr int kSumBlocks = 1024;

}  // namespace

void fill(const Tensor& x, double value) {
  const int64_t n = x.numel();
  fill_kernel<<<grid_for(n), kThreads>>>(x.ptr<float>(), n, static_cast<float>(value));
  FLOT_CUDA_LAUNCH();
}

void copy(const Tensor& src, const Tensor& dst) {
  // cudaMemcpyDefault: the direction follows from the addresses (unified virtual addressing).
  FLOT_CUDA(cudaMemcpy(dst.data, src.data, src.bytes(), cudaMemcpyDefault));
}

void axpy(double alpha, const Tensor& x, const Tensor& y) {
  const int64_t n = x.numel();
  axpy_kernel<<<grid_for(n), kThreads>>>(static_cast<float>(alpha), x.ptr<float>(), y.ptr<float>(),
                                         n);
  FLOT_CUDA_LAUNCH();
}

void scale(const Tensor& x, double alpha) {
  const int64_t n = x.numel();
  scale_kernel<<<grid_for(n), kThreads>>>(x.ptr<float>(), n, static_cast<float>(alpha));
  FLOT_CUDA_LAUNCH();
}

double sum_squares(const Tensor& x) {
  const int64_t n = x.numel();
  double* partial = nullptr;
  FLOT_CUDA(cudaMallocAsync(reinterpret_cast<void**>(&partial), (kSumBlocks + 1) * sizeof(double),
                            cudaStreamLegacy));
  sum_squares_partial<<<kSumBlocks, kThreads>>>(x.ptr<float>(), n, partial);
  FLOT_CUDA_LAUNCH();
  detail::launch_sum_doubles(partial, kSumBlocks, partial + kSumBlocks, cudaStreamLegacy);
  double s = 0;
  FLOT_CUDA(cudaMemcpy(&s, partial + kSumBlocks, sizeof(double), cudaMemcpyDeviceToHost));
  FLOT_CUDA(cudaFreeAsync(partial, cudaStreamLegacy));
  return s;
}

void cast(Context& ctx, const Tensor& src, const Tensor& dst) {
  const int64_t n = src.numel();
  cudaStream_t st = core::compute_stream(ctx);
  if (src.dtype == core::DType::f32) {
    f32_to_bf16_kernel<<<grid_for(n), kThreads, 0, st>>>(src.ptr<float>(),
                                                         static_cast<uint16_t*>(dst.data), n);
  } else {
    bf16_to_f32_kernel<<<grid_for(n), kThreads, 0, st>>>(static_cast<const uint16_t*>(src.data),
                                                         dst.ptr<float>(), n);
  }
  FLOT_CUDA_LAUNCH();
}

}  // namespace kernels::cuda
