// MoE ops on the GPU: the DeepSeek-V3 gate, the balance loss, the routing plan (a stable counting
// sort), permute / combine and their backward passes. Each kernel mirrors its CPU loop in
// kernels/cpu/moe_*.cpp (same selection order, ties to the lower index); indices are range-checked
// on the device and a bad one is recorded in the error word, its write skipped.
#include <cmath>

#include "core/cuda_runtime.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device_utils.hpp"
#include "kernels/cuda_ops.hpp"
#include "kernels/topk.hpp"

namespace kernels::cuda {

namespace {

constexpr int kMaxGroups = 256;  // groups a token's mask can hold
constexpr double kNormGuard = 1e-20;
using TopKf = TopK<float>;

// Sum of the top-2 biased scores of a group (the one score of a size-1 group).
__device__ float group_score(const float* s, const float* bias, int e0, int size) {
  const float b0 = s[e0] + bias[e0];
  if (size == 1) return b0;
  const float b1 = s[e0 + 1] + bias[e0 + 1];
  float m1 = b0 > b1 ? b0 : b1, m2 = b0 > b1 ? b1 : b0;
  for (int i = 2; i < size; ++i) {
    const float b = s[e0 + i] + bias[e0 + i];
    if (b > m1) {
      m2 = m1;
      m1 = b;
    } else if (b > m2) {
      m2 = b;
    }
  }
  return m1 + m2;
}

// One thread per token (E, k and the group count are small; the selection is serial anyway).
__global__ void gate_forward_kernel(GateShape g, int64_t n, const float* logits, const float* bias,
                                    float* scores, int32_t* expert_idx, float* weights) {
  const int E = g.num_experts, k = g.top_k, G = g.num_groups, per = E / G;
  const float rs = static_cast<float>(g.route_scale);
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n;
       t += int64_t(gridDim.x) * blockDim.x) {
    const float* lg = logits + t * E;
    float* s = scores + t * E;
    for (int e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + expf(-lg[e]));
    bool keep[kMaxGroups];
    for (int gi = 0; gi < G; ++gi) keep[gi] = g.groups_per_token >= G;
    if (g.groups_per_token < G) {
      TopKf top_groups(g.groups_per_token);
      for (int gi = 0; gi < G; ++gi) top_groups.push(group_score(s, bias, gi * per, per), gi);
      for (int j = 0; j < top_groups.n; ++j) keep[top_groups.idx[j]] = true;
    }
    TopKf top(k);
    for (int gi = 0; gi < G; ++gi) {
      if (!keep[gi]) continue;
      for (int e = gi * per; e < (gi + 1) * per; ++e) top.push(s[e] + bias[e], e);
    }
    float sum = 0;
    for (int j = 0; j < k; ++j) sum += s[top.idx[j]];
    const float inv = 1.0f / (sum + static_cast<float>(kNormGuard));
    for (int j = 0; j < k; ++j) {
      expert_idx[t * k + j] = top.idx[j];
      weights[t * k + j] = s[top.idx[j]] * inv * rs;
    }
  }
}

__global__ void gate_backward_kernel(GateShape g, int64_t n, const float* dweights,
                                     const float* scores, const int32_t* expert_idx,
                                     const float* dscores_extra, float* dlogits,
                                     core::DeviceErrorWord* err) {
  const int E = g.num_experts, k = g.top_k;
  const float rs = static_cast<float>(g.route_scale);
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n;
       t += int64_t(gridDim.x) * blockDim.x) {
    const float* s = scores + t * E;
    const float* dw = dweights + t * k;
    const int32_t* idx = expert_idx + t * k;
    float* dl = dlogits + t * E;
    bool ok = true;
    for (int j = 0; j < k; ++j)
      if (idx[j] < 0 || idx[j] >= E) {
        record_error(err, core::DeviceError::index_out_of_range, t * k + j, idx[j]);
        ok = false;
      }
    for (int e = 0; e < E; ++e) dl[e] = dscores_extra ? dscores_extra[t * E + e] : 0.0f;
    if (ok) {
      float sum = 0;
      for (int j = 0; j < k; ++j) sum += s[idx[j]];
      const float inv = 1.0f / (sum + static_cast<float>(kNormGuard));
      float c = 0;
      for (int j = 0; j < k; ++j) c += dw[j] * s[idx[j]];
      c *= inv;
      for (int j = 0; j < k; ++j) dl[idx[j]] += rs * inv * (dw[j] - c);
    }
    for (int e = 0; e < E; ++e) dl[e] *= s[e] * (1.0f - s[e]);
  }
}

// ---- balance loss ------------------------------------------------------------------------------
// Per token: the top-k of the unbiased scores counted into f[segment, E] (exact integer counts)
// and 1 / Z_t.
__global__ void balance_stats_kernel(int64_t n, int E, const float* scores, int k, int64_t seg,
                                     unsigned int* counts, double* zinv) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n;
       t += int64_t(gridDim.x) * blockDim.x) {
    const float* s = scores + t * E;
    TopKf top(k);
    double z = 0;
    for (int e = 0; e < E; ++e) {
      top.push(s[e], e);
      z += s[e];
    }
    for (int j = 0; j < k; ++j) atomicAdd(&counts[(t / seg) * E + top.idx[j]], 1u);
    zinv[t] = 1.0 / (z + kNormGuard);
  }
}

// <f_seg(t), s_t> / Z_t per token, f = counts * E / (k T).
__device__ double token_term(int64_t t, int E, const float* scores, const unsigned int* counts,
                             int64_t seg, double fscale, const double* zinv, double* mean) {
  const unsigned int* c = counts + (t / seg) * E;
  double d = 0;
  for (int e = 0; e < E; ++e) d += (c[e] * fscale) * scores[t * E + e];
  *mean = d * zinv[t];
  return *mean;
}

__global__ void balance_loss_partial(int64_t n, int E, const float* scores,
                                     const unsigned int* counts, int64_t seg, double fscale,
                                     const double* zinv, double* partial) {
  double acc = 0, mean;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n;
       t += int64_t(gridDim.x) * blockDim.x)
    acc += token_term(t, E, scores, counts, seg, fscale, zinv, &mean);
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void balance_loss_backward_kernel(int64_t n, int E, const float* scores,
                                             const unsigned int* counts, int64_t seg, double fscale,
                                             const double* zinv, double c, float* dscores) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n;
       t += int64_t(gridDim.x) * blockDim.x) {
    double mean;
    token_term(t, E, scores, counts, seg, fscale, zinv, &mean);
    const unsigned int* f = counts + (t / seg) * E;
    for (int e = 0; e < E; ++e)
      dscores[t * E + e] += static_cast<float>(c * zinv[t] * (f[e] * fscale - mean));
  }
}

// ---- routing plan: a stable counting sort of the N*k pairs by expert --------------------------
constexpr int kChunk = 1024;  // pairs per warp in the histogram and placement passes

// counts[chunk, E]: pairs of each expert in each chunk; bad indices recorded.
__global__ void plan_histogram(const int32_t* idx, int64_t pairs, int E, int32_t* counts,
                               core::DeviceErrorWord* err) {
  const int64_t chunk = blockIdx.x;
  const int64_t p0 = chunk * kChunk, p1 = min(pairs, p0 + kChunk);
  for (int64_t p = p0 + threadIdx.x; p < p1; p += blockDim.x) {
    const int32_t e = idx[p];
    if (e < 0 || e >= E) {
      record_error(err, core::DeviceError::index_out_of_range, p, e);
      continue;
    }
    atomicAdd(&counts[chunk * E + e], 1);
  }
}

// One thread: the exclusive scan in (expert, chunk) order gives every chunk its first row per
// expert (base[chunk, E]) and the offsets [E + 1]. E x chunks is small (thousands).
__global__ void plan_scan(const int32_t* counts, int64_t chunks, int E, int32_t* base,
                          int32_t* offsets) {
  int32_t run = 0;
  for (int e = 0; e < E; ++e) {
    offsets[e] = run;
    for (int64_t c = 0; c < chunks; ++c) {
      base[c * E + e] = run;
      run += counts[c * E + e];
    }
  }
  offsets[E] = run;
}

// One warp per chunk, 32 pairs at a time in index order: lanes of one expert take consecutive
// rows in lane order (__match_any_sync), so rows keep pair order within an expert.
__global__ void plan_place(const int32_t* idx, int64_t pairs, int E, int32_t* base, int32_t* src,
                           int32_t* pos) {
  const int64_t chunk = blockIdx.x;
  const int lane = threadIdx.x;
  const int64_t p0 = chunk * kChunk, p1 = min(pairs, p0 + kChunk);
  int32_t* next = base + chunk * E;
  for (int64_t q = p0; q < p1; q += 32) {
    const int64_t p = q + lane;
    const bool live = p < p1;
    const int32_t e = live ? idx[p] : -1;
    const bool ok = live && e >= 0 && e < E;
    const unsigned active = __ballot_sync(0xffffffffu, ok);
    const unsigned peers = __match_any_sync(0xffffffffu, ok ? e : -1) & active;
    if (ok) {
      const int rank = __popc(peers & ((1u << lane) - 1u));
      const int32_t r = next[e] + rank;
      src[r] = static_cast<int32_t>(p);
      pos[p] = r;
    }
    __syncwarp();
    // The lowest lane of each expert advances its cursor after everyone has read it.
    if (ok && __ffs(peers) - 1 == lane) next[e] += __popc(peers);
    __syncwarp();
  }
}

// ---- permute / combine -------------------------------------------------------------------------
// xs[r] = x[src[r] / k]: one block per row.
__global__ void permute_kernel(const float* x, const int32_t* src, int k, int64_t rows, int64_t d,
                               float* xs, core::DeviceErrorWord* err) {
  const int64_t r = blockIdx.x;
  const int32_t s = src[r];
  const bool ok = s >= 0 && s < rows;
  if (!ok && threadIdx.x == 0) record_error(err, core::DeviceError::index_out_of_range, r, s);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    xs[r * d + i] = ok ? x[int64_t(s / k) * d + i] : 0.0f;
}

// dx[t] += sum_j dxs[pos[t k + j]]: one block per token.
__global__ void permute_backward_kernel(const float* dxs, const int32_t* pos, int k, int64_t rows,
                                        int64_t d, float* dx, core::DeviceErrorWord* err) {
  const int64_t t = blockIdx.x;
  for (int j = 0; j < k; ++j) {
    const int32_t r = pos[t * k + j];
    if (r < 0 || r >= rows) {
      if (threadIdx.x == 0) record_error(err, core::DeviceError::index_out_of_range, t * k + j, r);
      continue;
    }
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) dx[t * d + i] += dxs[int64_t(r) * d + i];
  }
}

// y[t] += sum_j w[t, j] ys[pos[t k + j]].
__global__ void combine_kernel(const float* ys, const float* w, const int32_t* pos, int k,
                               int64_t rows, int64_t d, float* y, core::DeviceErrorWord* err) {
  const int64_t t = blockIdx.x;
  for (int j = 0; j < k; ++j) {
    const int32_t r = pos[t * k + j];
    if (r < 0 || r >= rows) {
      if (threadIdx.x == 0) record_error(err, core::DeviceError::index_out_of_range, t * k + j, r);
      continue;
    }
    const float wj = w[t * k + j];
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
      y[t * d + i] += wj * ys[int64_t(r) * d + i];
  }
}

// dys[pos] = w dy[t]; dweights[t, j] = <dy[t], ys[pos]>: one warp per (token, slot).
__global__ void combine_backward_kernel(const float* dy, const float* ys, const float* w,
                                        const int32_t* pos, int64_t n, int k, int64_t d, float* dys,
                                        float* dweights, core::DeviceErrorWord* err) {
  const int64_t item = blockIdx.x * int64_t(blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (item >= n * k) return;
  const int64_t t = item / k, rows = n * k;
  const int32_t r = pos[item];
  if (r < 0 || r >= rows) {
    if (lane == 0) {
      record_error(err, core::DeviceError::index_out_of_range, item, r);
      dweights[item] = 0.0f;
    }
    return;
  }
  const float wj = w[item];
  float acc = 0;
  for (int64_t i = lane; i < d; i += 32) {
    const float g = dy[t * d + i];
    dys[int64_t(r) * d + i] = wj * g;
    acc += g * ys[int64_t(r) * d + i];
  }
  acc = warp_sum(acc);
  if (lane == 0) dweights[item] = acc;
}

int row_threads(int64_t d) {
  return d >= 512 ? 256 : 128;
}

}  // namespace

void gate_forward(Context& ctx, const GateShape& g, const Tensor& logits, const Tensor& bias,
                  const Tensor& scores, const Tensor& expert_idx, const Tensor& weights) {
  FLOT_CHECK(g.num_groups <= kMaxGroups, "CUDA gate: {} expert groups, at most {}", g.num_groups,
             kMaxGroups);
  const int64_t n = logits.shape[0];
  gate_forward_kernel<<<grid_for(n, 128), 128, 0, core::compute_stream(ctx)>>>(
      g, n, logits.ptr<float>(), bias.ptr<float>(), scores.ptr<float>(), expert_idx.ptr<int32_t>(),
      weights.ptr<float>());
  FLOT_CUDA_LAUNCH();
}

void gate_backward(Context& ctx, const GateShape& g, const Tensor& dweights, const Tensor& scores,
                   const Tensor& expert_idx, const Tensor& dscores_extra, const Tensor& dlogits) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t n = scores.shape[0];
  gate_backward_kernel<<<grid_for(n, 128), 128, 0, s.compute>>>(
      g, n, dweights.ptr<float>(), scores.ptr<float>(), expert_idx.ptr<int32_t>(),
      dscores_extra.empty() ? nullptr : dscores_extra.ptr<float>(), dlogits.ptr<float>(), s.errors);
  FLOT_CUDA_LAUNCH();
}

namespace {

// The counts and 1 / Z of a balance loss call, in device scratch (caller holds a ScratchScope).
struct BalanceStats {
  unsigned int* counts;
  double* zinv;
  double fscale;
};

BalanceStats balance_stats(core::CudaState& s, const Tensor& scores, int k, int64_t seg) {
  const int64_t n = scores.shape[0], E = scores.shape[1];
  BalanceStats b;
  b.counts = static_cast<unsigned int*>(s.scratch->zeros(core::DType::i32, {(n / seg) * E}).data);
  b.zinv = static_cast<double*>(s.scratch->alloc(core::DType::f64, {n}).data);
  b.fscale = static_cast<double>(E) / (static_cast<double>(k) * seg);
  balance_stats_kernel<<<grid_for(n, 128), 128, 0, s.compute>>>(
      n, static_cast<int>(E), scores.ptr<float>(), k, seg, b.counts, b.zinv);
  FLOT_CUDA_LAUNCH();
  return b;
}

constexpr int kLossBlocks = 256;

}  // namespace

double balance_loss_forward(Context& ctx, const Tensor& scores, int top_k, int64_t segment_len,
                            double alpha) {
  core::CudaState& s = core::cuda_state(ctx);
  core::ScratchScope scope(*s.scratch);
  const int64_t n = scores.shape[0], E = scores.shape[1];
  const BalanceStats b = balance_stats(s, scores, top_k, segment_len);
  double* partial =
      static_cast<double*>(s.scratch->alloc(core::DType::f64, {kLossBlocks + 1}).data);
  balance_loss_partial<<<kLossBlocks, kThreads, 0, s.compute>>>(
      n, static_cast<int>(E), scores.ptr<float>(), b.counts, segment_len, b.fscale, b.zinv,
      partial);
  FLOT_CUDA_LAUNCH();
  detail::launch_sum_doubles(partial, kLossBlocks, partial + kLossBlocks, s.compute);
  double total = 0;
  FLOT_CUDA(cudaMemcpyAsync(&total, partial + kLossBlocks, sizeof(double), cudaMemcpyDeviceToHost,
                            s.compute));
  FLOT_CUDA(cudaStreamSynchronize(s.compute));
  const double nseg = static_cast<double>(n / segment_len);
  return alpha * total / (nseg * static_cast<double>(segment_len));
}

void balance_loss_backward(Context& ctx, const Tensor& scores, int top_k, int64_t segment_len,
                           double alpha, double dloss, const Tensor& dscores) {
  core::CudaState& s = core::cuda_state(ctx);
  core::ScratchScope scope(*s.scratch);
  const int64_t n = scores.shape[0], E = scores.shape[1];
  const BalanceStats b = balance_stats(s, scores, top_k, segment_len);
  const double nseg = static_cast<double>(n / segment_len);
  const double c = dloss * alpha / (nseg * static_cast<double>(segment_len));
  balance_loss_backward_kernel<<<grid_for(n, 128), 128, 0, s.compute>>>(
      n, static_cast<int>(E), scores.ptr<float>(), b.counts, segment_len, b.fscale, b.zinv, c,
      dscores.ptr<float>());
  FLOT_CUDA_LAUNCH();
}

void moe_plan(Context& ctx, const Tensor& expert_idx, int num_experts, const Tensor& offsets,
              const Tensor& src, const Tensor& pos) {
  core::CudaState& s = core::cuda_state(ctx);
  core::ScratchScope scope(*s.scratch);
  const int64_t pairs = expert_idx.numel();
  const int64_t chunks = std::max<int64_t>(1, (pairs + kChunk - 1) / kChunk);
  int32_t* counts = s.scratch->zeros(core::DType::i32, {chunks * num_experts}).ptr<int32_t>();
  int32_t* base = s.scratch->alloc(core::DType::i32, {chunks * num_experts}).ptr<int32_t>();
  if (pairs > 0) {
    plan_histogram<<<static_cast<unsigned>(chunks), 256, 0, s.compute>>>(
        expert_idx.ptr<int32_t>(), pairs, num_experts, counts, s.errors);
    FLOT_CUDA_LAUNCH();
  }
  plan_scan<<<1, 1, 0, s.compute>>>(counts, chunks, num_experts, base, offsets.ptr<int32_t>());
  FLOT_CUDA_LAUNCH();
  if (pairs > 0) {
    plan_place<<<static_cast<unsigned>(chunks), 32, 0, s.compute>>>(
        expert_idx.ptr<int32_t>(), pairs, num_experts, base, src.ptr<int32_t>(),
        pos.ptr<int32_t>());
    FLOT_CUDA_LAUNCH();
  }
}

void moe_permute(Context& ctx, const Tensor& x, const Tensor& src, int top_k, const Tensor& xs) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t rows = src.numel(), d = x.cols();
  permute_kernel<<<static_cast<unsigned>(rows), row_threads(d), 0, s.compute>>>(
      x.ptr<float>(), src.ptr<int32_t>(), top_k, rows, d, xs.ptr<float>(), s.errors);
  FLOT_CUDA_LAUNCH();
}

void moe_permute_backward(Context& ctx, const Tensor& dxs, const Tensor& pos, int top_k,
                          const Tensor& dx) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t n = dx.rows(), d = dx.cols(), rows = n * top_k;
  permute_backward_kernel<<<static_cast<unsigned>(n), row_threads(d), 0, s.compute>>>(
      dxs.ptr<float>(), pos.ptr<int32_t>(), top_k, rows, d, dx.ptr<float>(), s.errors);
  FLOT_CUDA_LAUNCH();
}

void moe_combine(Context& ctx, const Tensor& ys, const Tensor& weights, const Tensor& pos,
                 const Tensor& y) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t n = weights.shape[0], k = weights.shape[1], d = y.cols();
  combine_kernel<<<static_cast<unsigned>(n), row_threads(d), 0, s.compute>>>(
      ys.ptr<float>(), weights.ptr<float>(), pos.ptr<int32_t>(), static_cast<int>(k), n * k, d,
      y.ptr<float>(), s.errors);
  FLOT_CUDA_LAUNCH();
}

void moe_combine_backward(Context& ctx, const Tensor& dy, const Tensor& ys, const Tensor& weights,
                          const Tensor& pos, const Tensor& dys, const Tensor& dweights) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t n = weights.shape[0], k = weights.shape[1], d = dy.cols();
  const int64_t items = n * k, per_block = kThreads / 32;
  combine_backward_kernel<<<static_cast<unsigned>((items + per_block - 1) / per_block), kThreads, 0,
                            s.compute>>>(dy.ptr<float>(), ys.ptr<float>(), weights.ptr<float>(),
                                         pos.ptr<int32_t>(), n, static_cast<int>(k), d,
                                         dys.ptr<float>(), dweights.ptr<float>(), s.errors);
  FLOT_CUDA_LAUNCH();
}

}  // namespace kernels::cuda
