// Fused output head + cross-entropy on the GPU, chunked over tokens and vocabulary so that the
// logits never exist whole: per (token chunk, vocab chunk) block one FP32 GEMM (cuBLASLt) into
// scratch, then a row kernel that folds the block into running max / sum (forward, in double as
// the CPU does) or turns it into dlogits = scale (softmax - onehot) (backward), followed by the
// two GEMMs of the gradients.
#include <cmath>

#include "core/cuda_runtime.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/lt_gemm.hpp"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace {

constexpr int64_t kVocabChunk = 8192;
constexpr int64_t kBlockElems = int64_t(1) << 24;  // 64 MiB of logits per block at most

struct Chunks {
  int64_t tokens, vocab;
};
Chunks chunks_for(int64_t N, int64_t V) {
  const int64_t vc = std::min(V, kVocabChunk);
  return {std::max<int64_t>(1, std::min(N, kBlockElems / vc)), vc};
}

// One block per token row of the chunk: fold logits L[r, 0:vc) into run_max / run_sum, keep the
// target's logit. A target >= V is recorded (targets < 0 are ignored tokens).
__global__ void ce_fold(const float* L, int64_t vc, int64_t v0, int64_t V, const int32_t* targets,
                        double* run_max, double* run_sum, float* target_logit, int64_t n0,
                        core::DeviceErrorWord* err) {
  const int64_t r = blockIdx.x;
  const float* row = L + r * vc;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < vc; j += blockDim.x) m = fmaxf(m, row[j]);
  __shared__ float red[32];
  m = warp_max(m);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  m = lane < static_cast<int>(blockDim.x / 32) ? red[lane] : -INFINITY;
  m = warp_max(m);  // every warp reduces the same partials
  const double mm = fmax(run_max[r], static_cast<double>(m));
  double s = 0;
  for (int64_t j = threadIdx.x; j < vc; j += blockDim.x)
    s += static_cast<double>(expf(row[j] - static_cast<float>(mm)));
  s = block_sum(s);
  if (threadIdx.x == 0) {
    const int32_t t = targets[n0 + r];
    if (t >= V) record_error(err, core::DeviceError::target_out_of_range, n0 + r, t);
    if (t >= v0 && t < v0 + vc) target_logit[r] = row[t - v0];
    run_sum[r] = run_sum[r] * exp(run_max[r] - mm) + s;
    run_max[r] = mm;
  }
}

__global__ void ce_init(double* run_max, double* run_sum, float* target_logit, int64_t nc) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < nc;
       r += int64_t(gridDim.x) * blockDim.x) {
    run_max[r] = -INFINITY;
    run_sum[r] = 0;
    target_logit[r] = 0;
  }
}

__global__ void ce_finish(const double* run_max, const double* run_sum, const float* target_logit,
                          const int32_t* targets, int64_t n0, int64_t nc, float* losses,
                          float* lse) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < nc;
       r += int64_t(gridDim.x) * blockDim.x) {
    const double l = run_max[r] + log(run_sum[r]);
    lse[n0 + r] = static_cast<float>(l);
    losses[n0 + r] = targets[n0 + r] < 0 ? 0.0f : static_cast<float>(l - target_logit[r]);
  }
}

// L[r, :] = scale exp(L - lse) - scale [target]; zero for ignored tokens.
__global__ void ce_dlogits(float* L, int64_t vc, int64_t v0, const int32_t* targets,
                           const float* lse, int64_t n0, float scale) {
  const int64_t r = blockIdx.x;
  const int32_t t = targets[n0 + r];
  float* row = L + r * vc;
  const float l = lse[n0 + r];
  for (int64_t j = threadIdx.x; j < vc; j += blockDim.x) {
    float g = t < 0 ? 0.0f : scale * expf(row[j] - l);
    if (t >= 0 && v0 + j == t) g -= scale;
    row[j] = g;
  }
}

}  // namespace

void head_ce_forward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& targets,
                     const Tensor& losses, const Tensor& lse) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t N = x.shape[0], D = x.shape[1], V = W.shape[0];
  const Chunks c = chunks_for(N, V);
  core::ScratchScope scope(*s.scratch);
  float* L = s.scratch->alloc(core::DType::f32, {c.tokens * c.vocab}).ptr<float>();
  double* run_max = static_cast<double*>(s.scratch->alloc(core::DType::f64, {c.tokens}).data);
  double* run_sum = static_cast<double*>(s.scratch->alloc(core::DType::f64, {c.tokens}).data);
  float* tl = s.scratch->alloc(core::DType::f32, {c.tokens}).ptr<float>();
  const float* xp = x.ptr<float>();
  const float* wp = W.ptr<float>();
  for (int64_t n0 = 0; n0 < N; n0 += c.tokens) {
    const int64_t nc = std::min(c.tokens, N - n0);
    ce_init<<<grid_for(nc), kThreads, 0, s.compute>>>(run_max, run_sum, tl, nc);
    FLOT_CUDA_LAUNCH();
    for (int64_t v0 = 0; v0 < V; v0 += c.vocab) {
      const int64_t vc = std::min(c.vocab, V - v0);
      // L[nc, vc] = X[n0 : n0 + nc] W[v0 : v0 + vc]^T
      detail::gemm_rowmajor(s, nc, vc, D, xp + n0 * D, OperandKind::f32, false, wp + v0 * D,
                            OperandKind::f32, true, L, 1.0f, 0.0f);
      ce_fold<<<static_cast<unsigned>(nc), 256, 0, s.compute>>>(
          L, vc, v0, V, targets.ptr<int32_t>(), run_max, run_sum, tl, n0, s.errors);
      FLOT_CUDA_LAUNCH();
    }
    ce_finish<<<grid_for(nc), kThreads, 0, s.compute>>>(run_max, run_sum, tl,
                                                        targets.ptr<int32_t>(), n0, nc,
                                                        losses.ptr<float>(), lse.ptr<float>());
    FLOT_CUDA_LAUNCH();
  }
}

void head_ce_backward(Context& ctx, const Tensor& x, const Tensor& W, const Tensor& targets,
                      const Tensor& lse, double scale, const Tensor& dx, const Tensor& dW) {
  core::CudaState& s = core::cuda_state(ctx);
  const int64_t N = x.shape[0], D = x.shape[1], V = W.shape[0];
  const Chunks c = chunks_for(N, V);
  core::ScratchScope scope(*s.scratch);
  float* L = s.scratch->alloc(core::DType::f32, {c.tokens * c.vocab}).ptr<float>();
  const float* xp = x.ptr<float>();
  const float* wp = W.ptr<float>();
  if (!dx.empty()) FLOT_CUDA(cudaMemsetAsync(dx.data, 0, dx.bytes(), s.compute));
  for (int64_t n0 = 0; n0 < N; n0 += c.tokens) {
    const int64_t nc = std::min(c.tokens, N - n0);
    for (int64_t v0 = 0; v0 < V; v0 += c.vocab) {
      const int64_t vc = std::min(c.vocab, V - v0);
      detail::gemm_rowmajor(s, nc, vc, D, xp + n0 * D, OperandKind::f32, false, wp + v0 * D,
                            OperandKind::f32, true, L, 1.0f, 0.0f);
      ce_dlogits<<<static_cast<unsigned>(nc), 256, 0, s.compute>>>(
          L, vc, v0, targets.ptr<int32_t>(), lse.ptr<float>(), n0, static_cast<float>(scale));
      FLOT_CUDA_LAUNCH();
      // dx[n0 : n0 + nc] += dL W[v0 : v0 + vc];  dW[v0 : v0 + vc] += dL^T X[n0 : n0 + nc]
      if (!dx.empty())
        detail::gemm_rowmajor(s, nc, D, vc, L, OperandKind::f32, false, wp + v0 * D,
                              OperandKind::f32, false, dx.ptr<float>() + n0 * D, 1.0f, 1.0f);
      if (!dW.empty())
        detail::gemm_rowmajor(s, vc, D, nc, L, OperandKind::f32, true, xp + n0 * D,
                              OperandKind::f32, false, dW.ptr<float>() + v0 * D, 1.0f, 1.0f);
    }
  }
}

}  // namespace kernels::cuda
