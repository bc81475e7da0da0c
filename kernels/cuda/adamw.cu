// AdamW on the GPU (optim::adamw_step): f32 parameters and gradients, f32 or bf16 moments, the
// scalars prepared in double on the host exactly as the CPU kernel does (optim/adamw.cpp).
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

namespace kernels::cuda {

namespace {

struct AdamScalars {
  float b1, b2, one_minus_b1, one_minus_b2, inv_bc1, inv_bc2, eps, wd, lr, scale;
};

template <class M>
__device__ inline float load_moment(M x);
template <>
__device__ inline float load_moment<float>(float x) {
  return x;
}
template <>
__device__ inline float load_moment<uint16_t>(uint16_t x) {
  return bf16_value(x);
}

template <class M>
__device__ inline M store_moment(float x);
template <>
__device__ inline float store_moment<float>(float x) {
  return x;
}
template <>
__device__ inline uint16_t store_moment<uint16_t>(float x) {
  return bf16_bits(x);
}

template <class M>
__global__ void adamw_kernel(float* p, const float* g, M* m, M* v, int64_t n, AdamScalars s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] * s.scale;
    const M ms = store_moment<M>(s.b1 * load_moment(m[i]) + s.one_minus_b1 * gi);
    const M vs = store_moment<M>(s.b2 * load_moment(v[i]) + s.one_minus_b2 * gi * gi);
    m[i] = ms;
    v[i] = vs;
    const float mi = load_moment(ms), vi = load_moment(vs), pi = p[i];
    p[i] = pi - s.lr * ((mi * s.inv_bc1) / (sqrtf(vi * s.inv_bc2) + s.eps) + s.wd * pi);
  }
}

}  // namespace

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                double beta1, double beta2, double eps, double weight_decay, int64_t step,
                double lr, double grad_scale, bool decay) {
  AdamScalars s;
  s.b1 = static_cast<float>(beta1);
  s.b2 = static_cast<float>(beta2);
  s.one_minus_b1 = static_cast<float>(1.0 - beta1);
  s.one_minus_b2 = static_cast<float>(1.0 - beta2);
  s.inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(beta1, static_cast<double>(step))));
  s.inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(beta2, static_cast<double>(step))));
  s.eps = static_cast<float>(eps);
  s.wd = static_cast<float>(decay ? weight_decay : 0.0);
  s.lr = static_cast<float>(lr);
  s.scale = static_cast<float>(grad_scale);
  const int64_t n = param.numel();
  if (m.dtype == core::DType::bf16) {
    adamw_kernel<uint16_t><<<grid_for(n), kThreads>>>(param.ptr<float>(), grad.ptr<float>(),
                                                      static_cast<uint16_t*>(m.data),
                                                      static_cast<uint16_t*>(v.data), n, s);
  } else {
    adamw_kernel<float><<<grid_for(n), kThreads>>>(param.ptr<float>(), grad.ptr<float>(),
                                                   m.ptr<float>(), v.ptr<float>(), n, s);
  }
  FLOT_CUDA_LAUNCH();
}

}  // namespace kernels::cuda
