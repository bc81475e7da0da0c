// TopK: the running top-k of the MoE gate and balance loss, shared by the CPU kernels
// (kernels/cpu/moe_*.cpp) and the CUDA kernels (kernels/cuda/moe.cu), so both select the same
// experts: sorted descending, ties to the lower index. Candidates must be pushed in ascending
// index order: an equal value then never displaces an earlier one. Works for -inf values (no
// sentinel) and leaves NaN candidates last.
#pragma once

#ifdef __CUDACC__
#define FLOT_HD __host__ __device__
#else
#define FLOT_HD
#endif

namespace kernels {

// The largest k (and groups_per_token) TopK holds; the launchers check against it.
constexpr int kMaxTopK = 64;

template <class T>
struct TopK {
  int k = 0, n = 0;
  T val[kMaxTopK];
  int idx[kMaxTopK];
  FLOT_HD explicit TopK(int k_) : k(k_) {}
  FLOT_HD void push(T v, int i) {
    if (n == k && !(v > val[k - 1])) return;
    int p = n < k ? n++ : k - 1;
    while (p > 0 && v > val[p - 1]) {
      val[p] = val[p - 1];
      idx[p] = idx[p - 1];
      --p;
    }
    val[p] = v;
    idx[p] = i;
  }
};

}  // namespace kernels
