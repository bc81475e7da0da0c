// Causal attention on the GPU: a tiled, memory-efficient kernel (the flash-attention recurrence in
// FP32 on CUDA cores). Scores never leave shared memory: each warp owns one query row (forward,
// dq) or one key row (dk, dv) and walks the key (query) tiles of 32 rows staged in shared memory,
// one row per lane, keeping the running max, sum and output in registers. The backward pass
// recomputes the probabilities from the saved log-sum-exp and needs no atomics: dq by query
// rows, dk and dv by key rows. Head dimensions up to 256 (each lane holds 8 output columns).
#include <cmath>

#include "core/cuda_runtime.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace {

constexpr int kWarps = 8;      // rows per block, one per warp
constexpr int kTile = 32;      // key (query) rows staged per step, one per lane
constexpr int kMaxChunks = 8;  // head dim <= 32 * kMaxChunks

struct AttnDims {
  int64_t B, T, H, Dqk, Dv;
  float scale;
};

// Element (b, t, h, d) of a [B*T, H, D] tensor.
__device__ inline int64_t at(const AttnDims& s, int64_t b, int64_t t, int64_t h, int64_t D) {
  return ((b * s.T + t) * s.H + h) * D;
}

// Copies rows [t0, t0 + kTile) of head h (zeros past T) into a padded shared tile [kTile][ld].
__device__ void stage(const float* src, const AttnDims& s, int64_t b, int64_t h, int64_t t0,
                      int64_t D, float* tile, int64_t ld) {
  for (int64_t e = threadIdx.x; e < kTile * D; e += blockDim.x) {
    const int64_t r = e / D, d = e % D, t = t0 + r;
    tile[r * ld + d] = t < s.T ? src[at(s, b, t, h, D) + d] : 0.0f;
  }
}

__device__ inline float dot(const float* a, const float* b, int64_t n) {
  float acc = 0;
  for (int64_t d = 0; d < n; ++d) acc += a[d] * b[d];
  return acc;
}

// One warp copies row t of head h (zeros past T) into dst[0, D).
__device__ inline void warp_row(const float* src, const AttnDims& s, int64_t b, int64_t t,
                                int64_t h, int64_t D, float* dst, int lane) {
  for (int64_t d = lane; d < D; d += 32) dst[d] = t < s.T ? src[at(s, b, t, h, D) + d] : 0.0f;
}

// acc[c] (column lane + 32 c of D) = scale_old * acc[c] + sum_jj w[jj] * tile[jj][column].
__device__ inline void accumulate(float (&acc)[kMaxChunks], float scale_old, const float* w,
                                  const float* tile, int64_t ld, int64_t D, int lane) {
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) {
      float a = acc[c] * scale_old;
      for (int jj = 0; jj < kTile; ++jj) a += w[jj] * tile[jj * ld + d];
      acc[c] = a;
    }
  }
}

// Writes scale * acc (columns lane + 32 c of D) to dst.
__device__ inline void store_row(const float (&acc)[kMaxChunks], float scale, int64_t D, float* dst,
                                 int lane) {
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) dst[d] = scale * acc[c];
  }
}

__global__ void attention_forward_kernel(AttnDims s, const float* q, const float* k, const float* v,
                                         float* out, float* lse) {
  extern __shared__ float smem[];
  const int64_t ldk = s.Dqk + 1;
  float* Ks = smem;                 // [kTile][Dqk + 1]
  float* Vs = Ks + kTile * ldk;     // [kTile][Dv]
  float* Qs = Vs + kTile * s.Dv;    // [kWarps][Dqk]
  float* Ps = Qs + kWarps * s.Dqk;  // [kWarps][kTile]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t i0 = int64_t(blockIdx.x) * kWarps, i = i0 + warp;
  const int64_t last = min(s.T - 1, i0 + kWarps - 1);
  warp_row(q, s, b, i, h, s.Dqk, Qs + warp * s.Dqk, lane);
  float acc[kMaxChunks] = {};
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 <= last; j0 += kTile) {
    __syncthreads();
    stage(k, s, b, h, j0, s.Dqk, Ks, ldk);
    stage(v, s, b, h, j0, s.Dv, Vs, s.Dv);
    __syncthreads();
    if (i >= s.T || j0 > i) continue;
    const int64_t j = j0 + lane;
    const float sc = j <= i ? s.scale * dot(Qs + warp * s.Dqk, Ks + lane * ldk, s.Dqk) : -INFINITY;
    const float m_new = fmaxf(m, warp_max(sc));  // lane 0's key is visible, so m_new is finite
    const float p = j <= i ? expf(sc - m_new) : 0.0f;
    const float alpha = expf(m - m_new);
    l = l * alpha + warp_sum(p);
    Ps[warp * kTile + lane] = p;
    __syncwarp();
    accumulate(acc, alpha, Ps + warp * kTile, Vs, s.Dv, s.Dv, lane);
    __syncwarp();
    m = m_new;
  }
  if (i >= s.T) return;
  store_row(acc, 1.0f / l, s.Dv, out + at(s, b, i, h, s.Dv), lane);
  if (lane == 0) lse[(b * s.H + h) * s.T + i] = m + logf(l);
}

// delta[b, h, t] = dout . out over the value dims (one warp per row).
__global__ void attention_delta_kernel(AttnDims s, const float* dout, const float* out,
                                       float* delta) {
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);  // (b * T + t) * H + h
  const int lane = threadIdx.x & 31;
  if (row >= s.B * s.T * s.H) return;
  float acc = 0;
  for (int64_t d = lane; d < s.Dv; d += 32) acc += dout[row * s.Dv + d] * out[row * s.Dv + d];
  acc = warp_sum(acc);
  const int64_t h = row % s.H, bt = row / s.H, b = bt / s.T, t = bt % s.T;
  if (lane == 0) delta[(b * s.H + h) * s.T + t] = acc;
}

// dq: one warp per query row, over the visible key tiles.
__global__ void attention_dq_kernel(AttnDims s, const float* dout, const float* q, const float* k,
                                    const float* v, const float* lse, const float* delta,
                                    float* dq) {
  extern __shared__ float smem[];
  const int64_t ldk = s.Dqk + 1, ldv = s.Dv + 1;
  float* Ks = smem;                 // [kTile][Dqk + 1]
  float* Vs = Ks + kTile * ldk;     // [kTile][Dv + 1]
  float* Qs = Vs + kTile * ldv;     // [kWarps][Dqk]
  float* Os = Qs + kWarps * s.Dqk;  // [kWarps][Dv]  (dout rows)
  float* Ps = Os + kWarps * s.Dv;   // [kWarps][kTile] (dS)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t i0 = int64_t(blockIdx.x) * kWarps, i = i0 + warp;
  const int64_t last = min(s.T - 1, i0 + kWarps - 1);
  warp_row(q, s, b, i, h, s.Dqk, Qs + warp * s.Dqk, lane);
  warp_row(dout, s, b, i, h, s.Dv, Os + warp * s.Dv, lane);
  const float lse_i = i < s.T ? lse[(b * s.H + h) * s.T + i] : 0.0f;
  const float delta_i = i < s.T ? delta[(b * s.H + h) * s.T + i] : 0.0f;
  float acc[kMaxChunks] = {};
  for (int64_t j0 = 0; j0 <= last; j0 += kTile) {
    __syncthreads();
    stage(k, s, b, h, j0, s.Dqk, Ks, ldk);
    stage(v, s, b, h, j0, s.Dv, Vs, ldv);
    __syncthreads();
    if (i >= s.T || j0 > i) continue;
    const int64_t j = j0 + lane;
    float ds = 0.0f;
    if (j <= i) {
      const float p = expf(s.scale * dot(Qs + warp * s.Dqk, Ks + lane * ldk, s.Dqk) - lse_i);
      ds = p * (dot(Os + warp * s.Dv, Vs + lane * ldv, s.Dv) - delta_i);
    }
    Ps[warp * kTile + lane] = ds;
    __syncwarp();
    accumulate(acc, 1.0f, Ps + warp * kTile, Ks, ldk, s.Dqk, lane);
    __syncwarp();
  }
  if (i >= s.T) return;
  store_row(acc, s.scale, s.Dqk, dq + at(s, b, i, h, s.Dqk), lane);
}

// dk, dv: one warp per key row j, over the query tiles that see it (queries i >= j).
__global__ void attention_dkdv_kernel(AttnDims s, const float* dout, const float* q, const float* k,
                                      const float* v, const float* lse, const float* delta,
                                      float* dk, float* dv) {
  extern __shared__ float smem[];
  const int64_t ldq = s.Dqk + 1, ldo = s.Dv + 1;
  float* Qs = smem;                 // [kTile][Dqk + 1]
  float* Os = Qs + kTile * ldq;     // [kTile][Dv + 1]   (dout rows)
  float* Kw = Os + kTile * ldo;     // [kWarps][Dqk]
  float* Vw = Kw + kWarps * s.Dqk;  // [kWarps][Dv]
  float* Ps = Vw + kWarps * s.Dv;   // [kWarps][kTile]  P
  float* Ds = Ps + kWarps * kTile;  // [kWarps][kTile]  dS
  float* Ls = Ds + kWarps * kTile;  // [kTile] lse, then [kTile] delta
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t j0 = int64_t(blockIdx.x) * kWarps, j = j0 + warp;
  warp_row(k, s, b, j, h, s.Dqk, Kw + warp * s.Dqk, lane);
  warp_row(v, s, b, j, h, s.Dv, Vw + warp * s.Dv, lane);
  float ak[kMaxChunks] = {}, av[kMaxChunks] = {};
  const float* lse_bh = lse + (b * s.H + h) * s.T;
  const float* delta_bh = delta + (b * s.H + h) * s.T;
  for (int64_t q0 = j0 / kTile * kTile; q0 < s.T; q0 += kTile) {
    __syncthreads();
    stage(q, s, b, h, q0, s.Dqk, Qs, ldq);
    stage(dout, s, b, h, q0, s.Dv, Os, ldo);
    if (threadIdx.x < kTile) {
      const int64_t t = q0 + threadIdx.x;
      Ls[threadIdx.x] = t < s.T ? lse_bh[t] : 0.0f;
      Ls[kTile + threadIdx.x] = t < s.T ? delta_bh[t] : 0.0f;
    }
    __syncthreads();
    if (j >= s.T || q0 + kTile - 1 < j) continue;
    const int64_t i = q0 + lane;
    float p = 0.0f, ds = 0.0f;
    if (i >= j && i < s.T) {
      p = expf(s.scale * dot(Qs + lane * ldq, Kw + warp * s.Dqk, s.Dqk) - Ls[lane]);
      ds = p * (dot(Os + lane * ldo, Vw + warp * s.Dv, s.Dv) - Ls[kTile + lane]);
    }
    Ps[warp * kTile + lane] = p;
    Ds[warp * kTile + lane] = ds;
    __syncwarp();
    accumulate(av, 1.0f, Ps + warp * kTile, Os, ldo, s.Dv, lane);
    accumulate(ak, 1.0f, Ds + warp * kTile, Qs, ldq, s.Dqk, lane);
    __syncwarp();
  }
  if (j >= s.T) return;
  store_row(ak, s.scale, s.Dqk, dk + at(s, b, j, h, s.Dqk), lane);
  store_row(av, 1.0f, s.Dv, dv + at(s, b, j, h, s.Dv), lane);
}

AttnDims dims_of(const Tensor& q, const Tensor& v, int64_t seq_len, double scale) {
  AttnDims s;
  s.T = seq_len;
  s.B = q.shape[0] / seq_len;
  s.H = q.shape[1];
  s.Dqk = q.shape[2];
  s.Dv = v.shape[2];
  s.scale = static_cast<float>(scale);
  FLOT_CHECK(s.Dqk <= 32 * kMaxChunks && s.Dv <= 32 * kMaxChunks,
             "CUDA attention: head dims {} (q, k) and {} (v) must be at most {}", s.Dqk, s.Dv,
             32 * kMaxChunks);
  return s;
}

// Launches `kernel` with `floats` of dynamic shared memory, raising the block's limit above 48 KiB
// when needed (up to the device's opt-in maximum).
template <class Kernel, class... Args>
void launch(core::CudaState& st, Kernel kernel, dim3 grid, int64_t floats, Args... args) {
  const size_t bytes = static_cast<size_t>(floats) * sizeof(float);
  FLOT_CHECK(bytes <= st.smem_per_block_optin,
             "CUDA attention needs {} bytes of shared memory per block, the device allows {}",
             bytes, st.smem_per_block_optin);
  if (bytes > 48 * 1024)
    FLOT_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(bytes)));
  kernel<<<grid, kWarps * 32, bytes, st.compute>>>(args...);
  FLOT_CUDA_LAUNCH();
}

dim3 row_grid(const AttnDims& s) {
  return dim3(static_cast<unsigned>((s.T + kWarps - 1) / kWarps), static_cast<unsigned>(s.H),
              static_cast<unsigned>(s.B));
}

}  // namespace

void attention_forward(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       int64_t seq_len, double scale, const Tensor& out, const Tensor& lse) {
  const AttnDims s = dims_of(q, v, seq_len, scale);
  const int64_t floats = kTile * (s.Dqk + 1) + kTile * s.Dv + kWarps * s.Dqk + kWarps * kTile;
  launch(core::cuda_state(ctx), attention_forward_kernel, row_grid(s), floats, s, q.ptr<float>(),
         k.ptr<float>(), v.ptr<float>(), out.ptr<float>(), lse.ptr<float>());
}

void attention_backward(Context& ctx, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, int64_t seq_len,
                        double scale, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const AttnDims s = dims_of(q, v, seq_len, scale);
  core::CudaState& st = core::cuda_state(ctx);
  core::ScratchScope scope(*st.scratch);
  const Tensor delta = st.scratch->alloc(core::DType::f32, {s.B, s.H, s.T});
  const int64_t rows = s.B * s.T * s.H;
  attention_delta_kernel<<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), kWarps * 32, 0,
                           st.compute>>>(s, dout.ptr<float>(), out.ptr<float>(),
                                         delta.ptr<float>());
  FLOT_CUDA_LAUNCH();
  const int64_t dq_floats =
      kTile * (s.Dqk + 1) + kTile * (s.Dv + 1) + kWarps * s.Dqk + kWarps * s.Dv + kWarps * kTile;
  launch(st, attention_dq_kernel, row_grid(s), dq_floats, s, dout.ptr<float>(), q.ptr<float>(),
         k.ptr<float>(), v.ptr<float>(), lse.ptr<float>(), delta.ptr<float>(), dq.ptr<float>());
  const int64_t kv_floats = kTile * (s.Dqk + 1) + kTile * (s.Dv + 1) + kWarps * s.Dqk +
                            kWarps * s.Dv + 2 * kWarps * kTile + 2 * kTile;
  launch(st, attention_dkdv_kernel, row_grid(s), kv_floats, s, dout.ptr<float>(), q.ptr<float>(),
         k.ptr<float>(), v.ptr<float>(), lse.ptr<float>(), delta.ptr<float>(), dk.ptr<float>(),
         dv.ptr<float>());
}

}  // namespace kernels::cuda
