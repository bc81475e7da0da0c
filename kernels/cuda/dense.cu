// Dense layer ops on the GPU: embedding, RMSNorm, RoPE, SwiGLU (compute stream). Row reductions
// accumulate in double as the CPU kernels do, so results agree to float rounding.
#include <cmath>

#include "core/cuda_runtime.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace {

// ---- embedding -------------------------------------------------------------------------------
// One block per token row. A token outside the table is recorded and its row zeroed.
__global__ void embedding_forward_kernel(const float* table, const int32_t* tokens, int64_t V,
                                         int64_t D, float* out, core::DeviceErrorWord* err) {
  const int64_t n = blockIdx.x;
  const int32_t t = tokens[n];
  const bool ok = t >= 0 && t < V;
  if (!ok && threadIdx.x == 0) record_error(err, core::DeviceError::token_out_of_range, n, t);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
    out[n * D + d] = ok ? table[int64_t(t) * D + d] : 0.0f;
}

// dtable[token] += dout[n]; tokens repeat, so the adds are atomic (their order is not fixed).
__global__ void embedding_backward_kernel(const float* dout, const int32_t* tokens, int64_t V,
                                          int64_t D, float* dtable, core::DeviceErrorWord* err) {
  const int64_t n = blockIdx.x;
  const int32_t t = tokens[n];
  if (t < 0 || t >= V) {
    if (threadIdx.x == 0) record_error(err, core::DeviceError::token_out_of_range, n, t);
    return;
  }
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
    atomicAdd(&dtable[int64_t(t) * D + d], dout[n * D + d]);
}

// ---- RMSNorm ---------------------------------------------------------------------------------
__global__ void rmsnorm_forward_kernel(const float* x, const float* w, int64_t D, double eps,
                                       float* y, float* rstd) {
  const int64_t n = blockIdx.x;
  const float* xr = x + n * D;
  double ss = 0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) ss += double(xr[d]) * xr[d];
  ss = block_sum(ss);
  const float r = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(D) + eps));
  if (threadIdx.x == 0) rstd[n] = r;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) y[n * D + d] = __fmul_rn(xr[d], r) * w[d];
}

__global__ void rmsnorm_backward_input_kernel(const float* dy, const float* x, const float* w,
                                              const float* rstd, int64_t D, float* dx) {
  const int64_t n = blockIdx.x;
  const float *dyr = dy + n * D, *xr = x + n * D;
  double dot = 0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) dot += double(dyr[d]) * w[d] * xr[d];
  dot = block_sum(dot);
  const float r = rstd[n];
  const float c = static_cast<float>(dot / static_cast<double>(D)) * r * r * r;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
    dx[n * D + d] = __fmul_rn(r, w[d]) * dyr[d] - c * xr[d];
}

// Partial column sums of dy * x * rstd over a chunk of rows: partial[chunk, D].
__global__ void rmsnorm_dw_partial(const float* dy, const float* x, const float* rstd, int64_t N,
                                   int64_t D, int64_t rows_per_chunk, float* partial) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d >= D) return;
  const int64_t n0 = blockIdx.y * rows_per_chunk, n1 = min(N, n0 + rows_per_chunk);
  float acc = 0;
  for (int64_t n = n0; n < n1; ++n) acc += dy[n * D + d] * x[n * D + d] * rstd[n];
  partial[blockIdx.y * D + d] = acc;
}

__global__ void rmsnorm_dw_reduce(const float* partial, int64_t chunks, int64_t D, float* dw) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d >= D) return;
  float acc = 0;
  for (int64_t c = 0; c < chunks; ++c) acc += partial[c * D + d];
  dw[d] += acc;
}

// ---- RoPE ------------------------------------------------------------------------------------
// One thread per (row, head, pair). Angles in double as the CPU table: pos * theta^(-2i/rope_dim).
__global__ void rope_kernel(float* x, int64_t rows, int64_t H, int64_t Dh, int64_t seq_len,
                            int64_t offset, int64_t half, double theta, double sign) {
  const int64_t total = rows * H * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, rh = idx / half, r = rh / H;
    const double inv_freq = pow(theta, -static_cast<double>(2 * i) / static_cast<double>(2 * half));
    const double a = static_cast<double>(r % seq_len) * inv_freq;
    const float c = static_cast<float>(cos(a)), s = static_cast<float>(sign * sin(a));
    float* v = x + rh * Dh + offset + 2 * i;
    const float x0 = v[0], x1 = v[1];
    v[0] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    v[1] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
  }
}

// ---- SwiGLU ----------------------------------------------------------------------------------
__global__ void swiglu_forward_kernel(const float* h, int64_t N, int64_t F, float* y) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < N * F;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = idx / F, f = idx % F;
    const float g = h[n * 2 * F + f], u = h[n * 2 * F + F + f];
    y[idx] = g / (1.0f + expf(-g)) * u;
  }
}

__global__ void swiglu_backward_kernel(const float* dy, const float* h, int64_t N, int64_t F,
                                       float* dh) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < N * F;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = idx / F, f = idx % F;
    const float g = h[n * 2 * F + f], u = h[n * 2 * F + F + f], d = dy[idx];
    const float s = 1.0f / (1.0f + expf(-g));
    dh[n * 2 * F + f] = d * u * s * (1.0f + g * (1.0f - s));
    dh[n * 2 * F + F + f] = d * g * s;
  }
}

int row_threads(int64_t D) {
  return D >= 1024 ? 512 : D >= 256 ? 256 : 128;
}

}  // namespace

void embedding_forward(Context& ctx, const Tensor& table, const Tensor& tokens, const Tensor& out) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t N = tokens.shape[0], V = table.shape[0], D = table.shape[1];
  embedding_forward_kernel<<<N, row_threads(D), 0, s.compute>>>(
      table.ptr<float>(), tokens.ptr<int32_t>(), V, D, out.ptr<float>(), s.errors);
  FLOT_CUDA_LAUNCH();
}

void embedding_backward(Context& ctx, const Tensor& dout, const Tensor& tokens,
                        const Tensor& dtable) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t N = tokens.shape[0], V = dtable.shape[0], D = dtable.shape[1];
  embedding_backward_kernel<<<N, row_threads(D), 0, s.compute>>>(
      dout.ptr<float>(), tokens.ptr<int32_t>(), V, D, dtable.ptr<float>(), s.errors);
  FLOT_CUDA_LAUNCH();
}

void rmsnorm_forward(Context& ctx, const Tensor& x, const Tensor& w, double eps, const Tensor& y,
                     const Tensor& rstd) {
  const int64_t N = rstd.shape[0], D = w.shape[0];
  rmsnorm_forward_kernel<<<N, row_threads(D), 0, core::compute_stream(ctx)>>>(
      x.ptr<float>(), w.ptr<float>(), D, eps, y.ptr<float>(), rstd.ptr<float>());
  FLOT_CUDA_LAUNCH();
}

void rmsnorm_backward_input(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                            const Tensor& rstd, const Tensor& dx) {
  const int64_t N = rstd.shape[0], D = w.shape[0];
  rmsnorm_backward_input_kernel<<<N, row_threads(D), 0, core::compute_stream(ctx)>>>(
      dy.ptr<float>(), x.ptr<float>(), w.ptr<float>(), rstd.ptr<float>(), D, dx.ptr<float>());
  FLOT_CUDA_LAUNCH();
}

void rmsnorm_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& rstd,
                             const Tensor& dw) {
  const int64_t N = rstd.shape[0], D = dw.shape[0];
  const int64_t chunks = std::min<int64_t>(64, (N + 63) / 64), per = (N + chunks - 1) / chunks;
  core::ScratchScope scope(core::device_scratch(ctx));
  Tensor partial = core::device_scratch(ctx).alloc(core::DType::f32, {chunks, D});
  cudaStream_t st = core::compute_stream(ctx);
  const dim3 grid(static_cast<unsigned>((D + 127) / 128), static_cast<unsigned>(chunks));
  rmsnorm_dw_partial<<<grid, 128, 0, st>>>(dy.ptr<float>(), x.ptr<float>(), rstd.ptr<float>(), N, D,
                                           per, partial.ptr<float>());
  FLOT_CUDA_LAUNCH();
  rmsnorm_dw_reduce<<<static_cast<unsigned>((D + 127) / 128), 128, 0, st>>>(
      partial.ptr<float>(), chunks, D, dw.ptr<float>());
  FLOT_CUDA_LAUNCH();
}

void rope(Context& ctx, const Tensor& x, int64_t seq_len, int64_t offset, int64_t rope_dim,
          double theta, bool inverse) {
  const int64_t rows = x.shape[0], H = x.shape[1], Dh = x.shape[2], half = rope_dim / 2;
  rope_kernel<<<grid_for(rows * H * half), kThreads, 0, core::compute_stream(ctx)>>>(
      x.ptr<float>(), rows, H, Dh, seq_len, offset, half, theta, inverse ? -1.0 : 1.0);
  FLOT_CUDA_LAUNCH();
}

void swiglu_forward(Context& ctx, const Tensor& h, const Tensor& y) {
  const int64_t F = y.cols(), N = h.numel() / (2 * F);
  swiglu_forward_kernel<<<grid_for(N * F), kThreads, 0, core::compute_stream(ctx)>>>(
      h.ptr<float>(), N, F, y.ptr<float>());
  FLOT_CUDA_LAUNCH();
}

void swiglu_backward(Context& ctx, const Tensor& dy, const Tensor& h, const Tensor& dh) {
  const int64_t F = dy.cols(), N = h.numel() / (2 * F);
  swiglu_backward_kernel<<<grid_for(N * F), kThreads, 0, core::compute_stream(ctx)>>>(
      dy.ptr<float>(), h.ptr<float>(), N, F, dh.ptr<float>());
  FLOT_CUDA_LAUNCH();
}

}  // namespace kernels::cuda
