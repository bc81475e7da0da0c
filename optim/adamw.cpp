// AdamW step for f32/f64 master parameters with moments of the parameter dtype or bf16: on the
// CPU here, on the GPU through kernels/cuda/adamw.cu (f32 only).
#include "optim/adamw.hpp"

#include <cmath>

#include "kernels/cuda_ops.hpp"

namespace optim {
namespace {

// Moment storage: the parameter's own type, or bf16 held as raw uint16_t bits. Arithmetic is
// always done in the parameter type T (float for f32 masters, double for f64 gradient tests).
template <class T, class M>
struct MomentIO;

template <class T>
struct MomentIO<T, T> {
  static T load(T x) { return x; }
  static T store(T x) { return x; }
};

template <class T>
struct MomentIO<T, uint16_t> {
  static T load(uint16_t h) { return static_cast<T>(core::bf16_to_f32(h)); }
  // For double this rounds twice (to float, then to bf16); the rare double-rounding case is
  // irrelevant since f64 parameters exist only for gradient tests.
  static uint16_t store(T x) { return core::f32_to_bf16(static_cast<float>(x)); }
};

template <class T, class M>
void adamw_kernel(T* __restrict p, const T* __restrict g, M* __restrict m, M* __restrict v,
                  int64_t n, const AdamWHyper& h, int64_t step, double lr, double grad_scale,
                  bool decay) {
  // Scalars are prepared in double so that b^step and the bias corrections are exact to the
  // parameter precision even late in training, then narrowed once.
  const T b1 = static_cast<T>(h.beta1);
  const T b2 = static_cast<T>(h.beta2);
  const T one_minus_b1 = static_cast<T>(1.0 - h.beta1);
  const T one_minus_b2 = static_cast<T>(1.0 - h.beta2);
  const T inv_bc1 = static_cast<T>(1.0 / (1.0 - std::pow(h.beta1, static_cast<double>(step))));
  const T inv_bc2 = static_cast<T>(1.0 / (1.0 - std::pow(h.beta2, static_cast<double>(step))));
  const T eps = static_cast<T>(h.eps);
  const T wd = static_cast<T>(decay ? h.weight_decay : 0.0);
  const T lr_t = static_cast<T>(lr);
  const T scale = static_cast<T>(grad_scale);

#pragma omp parallel for simd schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i] * scale;
    // The update uses the moments as stored (rounded when bf16), as PyTorch's AdamW does with
    // bf16 state tensors, so runs can be compared against it.
    const M ms = MomentIO<T, M>::store(b1 * MomentIO<T, M>::load(m[i]) + one_minus_b1 * gi);
    const M vs = MomentIO<T, M>::store(b2 * MomentIO<T, M>::load(v[i]) + one_minus_b2 * gi * gi);
    m[i] = ms;
    v[i] = vs;
    const T mi = MomentIO<T, M>::load(ms);
    const T vi = MomentIO<T, M>::load(vs);
    const T pi = p[i];
    p[i] = pi - lr_t * ((mi * inv_bc1) / (std::sqrt(vi * inv_bc2) + eps) + wd * pi);
  }
}

template <class T>
void dispatch_moments(const core::Tensor& param, const core::Tensor& grad, const core::Tensor& m,
                      const core::Tensor& v, const AdamWHyper& h, int64_t step, double lr,
                      double grad_scale, bool decay) {
  T* p = param.ptr<T>();
  const T* g = grad.ptr<T>();
  const int64_t n = param.numel();
  if (m.dtype == core::DType::bf16) {
    adamw_kernel<T, uint16_t>(p, g, static_cast<uint16_t*>(m.data), static_cast<uint16_t*>(v.data),
                              n, h, step, lr, grad_scale, decay);
  } else {
    adamw_kernel<T, T>(p, g, m.ptr<T>(), v.ptr<T>(), n, h, step, lr, grad_scale, decay);
  }
}

}  // namespace

void adamw_step(const core::Tensor& param, const core::Tensor& grad, const core::Tensor& m,
                const core::Tensor& v, const AdamWHyper& h, int64_t step, double lr,
                double grad_scale, bool decay) {
  using core::DType;
  FLOT_CHECK(step >= 1, "adamw step {} (steps count from 1 for the bias correction)", step);
  FLOT_CHECK(param.dtype == DType::f32 || param.dtype == DType::f64,
             "adamw parameters are {}, must be f32 or f64", core::dtype_name(param.dtype));
  FLOT_CHECK(grad.dtype == param.dtype, "adamw gradient is {}, parameter is {}",
             core::dtype_name(grad.dtype), core::dtype_name(param.dtype));
  // One moment dtype for both moments: the config has a single optim.moment_dtype, and mixing
  // would double the kernel instantiations for no use.
  FLOT_CHECK(m.dtype == v.dtype, "adamw moments differ in dtype: m {}, v {}",
             core::dtype_name(m.dtype), core::dtype_name(v.dtype));
  FLOT_CHECK(m.dtype == param.dtype || m.dtype == DType::bf16,
             "adamw moments are {}, must be {} (the parameter dtype) or bf16",
             core::dtype_name(m.dtype), core::dtype_name(param.dtype));
  FLOT_CHECK(grad.numel() == param.numel() && m.numel() == param.numel() &&
                 v.numel() == param.numel(),
             "adamw element counts differ: param {}, grad {}, m {}, v {}", param.numel(),
             grad.numel(), m.numel(), v.numel());
  FLOT_CHECK(grad.device == param.device && m.device == param.device && v.device == param.device,
             "adamw_step: parameter, gradient and moments on different devices");
  FLOT_CHECK(h.beta1 >= 0 && h.beta1 < 1 && h.beta2 >= 0 && h.beta2 < 1,
             "adamw betas ({}, {}) must lie in [0, 1)", h.beta1, h.beta2);
  if (param.numel() == 0) return;
  if (param.device == core::Device::cuda) {
    FLOT_CHECK(param.dtype == DType::f32, "adamw_step on the GPU takes f32 parameters, got {}",
               core::dtype_name(param.dtype));
    return kernels::cuda::adamw_step(param, grad, m, v, h.beta1, h.beta2, h.eps, h.weight_decay,
                                     step, lr, grad_scale, decay);
  }

  if (param.dtype == DType::f32)
    dispatch_moments<float>(param, grad, m, v, h, step, lr, grad_scale, decay);
  else
    dispatch_moments<double>(param, grad, m, v, h, step, lr, grad_scale, decay);
}

}  // namespace optim
