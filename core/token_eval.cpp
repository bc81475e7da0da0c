// Consecutive windows through the model's forward pass, losses summed in window order.
#include "core/token_eval.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace core {

TokenEval evaluate_token_file(Model& model, const data::TokenFile& file, int seq_len, int batch) {
  const int depth = model.config().model.mtp.depth;
  const int64_t T = seq_len, stride = T + 1;
  TokenEval r;
  r.windows = std::max<int64_t>(0, (file.size() - depth) / stride);
  if (r.windows == 0)
    FLOT_THROW(DataError,
               "{} holds {} tokens, fewer than one window of seq_len + 1 = {} (+ {} for "
               "the MTP targets); use a shorter --seq-len or a longer file",
               file.describe(), file.size(), stride, depth);
  double lm_sum = 0;
  std::vector<double> mtp_sum(depth, 0.0);
  std::vector<int64_t> mtp_tokens(depth, 0);
  data::MicroBatch mb;
  std::vector<int32_t> w(static_cast<size_t>(stride + depth));
  const int64_t vocab = model.config().model.vocab_size;
  for (int64_t first = 0; first < r.windows; first += batch) {
    const int64_t B = std::min<int64_t>(batch, r.windows - first);
    mb.batch = B;
    mb.seq_len = T;
    mb.inputs.resize(static_cast<size_t>(B * T));
    mb.targets.assign(depth + 1, std::vector<int32_t>(static_cast<size_t>(B * T)));
    for (int64_t b = 0; b < B; ++b) {
      file.read((first + b) * stride, stride + depth, vocab, w.data());
      std::copy(w.begin(), w.begin() + T, mb.inputs.begin() + b * T);
      for (int k = 0; k <= depth; ++k)
        std::copy(w.begin() + 1 + k, w.begin() + 1 + k + T, mb.targets[k].begin() + b * T);
    }
    const MicroLosses L = model.forward(0, mb, LossScales{}, /*training=*/false);
    model.release(0);
    lm_sum += L.lm_sum;
    r.tokens += L.lm_tokens;
    for (int k = 0; k < depth && k < static_cast<int>(L.mtp_sum.size()); ++k) {
      mtp_sum[k] += L.mtp_sum[k];
      mtp_tokens[k] += L.mtp_tokens[k];
    }
  }
  r.lm_loss = lm_sum / std::max<int64_t>(1, r.tokens);
  if (depth > 0) {
    double m = 0;
    for (int k = 0; k < depth; ++k) m += mtp_sum[k] / std::max<int64_t>(1, mtp_tokens[k]);
    r.mtp_loss = m / depth;
  }
  return r;
}

}  // namespace core
