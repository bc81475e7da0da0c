// The small kernels of kernels/cuda/device_utils.hpp.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device_utils.hpp"

namespace kernels::cuda::detail {

namespace {

__global__ void f32_to_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = bf16_bits(x[i]);
}

// 32 x 32 tiles through shared memory, so both the reads and the writes are coalesced.
__global__ void transpose_bytes(const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst) {
  __shared__ uint8_t tile[32][33];
  const int64_t r0 = int64_t(blockIdx.y) * 32, c0 = int64_t(blockIdx.x) * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = src[r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;  // dst row c, column r
    if (r < rows && c < cols) dst[c * rows + r] = tile[threadIdx.x][i];
  }
}

__global__ void zero_dst(lt::ScaleRepack r, float* dst) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < r.dst_count;
       e += int64_t(gridDim.x) * blockDim.x)
    dst[e] = 0.0f;
}

__global__ void repack_fill(lt::ScaleRepack r, const float* src, float* dst) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < r.inner * r.outer;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / r.outer, o = e % r.outer;
    dst[i * r.dst_i + o * r.dst_o] = src[i * r.src_i + o * r.src_o];
  }
}

__global__ void sum_doubles(const double* partial, int count, double* out) {
  double s = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

void launch_sum_doubles(const double* partial, int count, double* out, cudaStream_t stream) {
  sum_doubles<<<1, 1024, 0, stream>>>(partial, count, out);
  FLOT_CUDA_LAUNCH();
}

void launch_f32_to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_bf16<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  FLOT_CUDA_LAUNCH();
}

void launch_transpose_bytes(const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst,
                            cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>((rows + 31) / 32));
  FLOT_CHECK(grid.y <= 65535, "transpose of {} rows", rows);
  transpose_bytes<<<grid, dim3(32, 8), 0, stream>>>(src, rows, cols, dst);
  FLOT_CUDA_LAUNCH();
}

void launch_repack(const lt::ScaleRepack& r, const float* src, float* dst, cudaStream_t stream) {
  if (r.dst_count == 0) return;
  zero_dst<<<grid_for(r.dst_count), kThreads, 0, stream>>>(r, dst);
  FLOT_CUDA_LAUNCH();
  repack_fill<<<grid_for(r.inner * r.outer), kThreads, 0, stream>>>(r, src, dst);
  FLOT_CUDA_LAUNCH();
}

}  // namespace kernels::cuda::detail
