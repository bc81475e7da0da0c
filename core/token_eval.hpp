// Evaluation of a whole model over a token file (flotilla eval): the loss a checkpoint or an
// exported model reaches on held-out data, comparable with other implementations.
//
// The file is cut into consecutive windows of seq_len + 1 tokens: window w starts at token
// w * (seq_len + 1); the main head predicts tokens 1..seq_len of the window from tokens
// 0..seq_len-1. MTP depth k predicts token t + 1 + k, which for the last positions of a window
// lies in the next window's first tokens, exactly as in training windows (seq_len + 1 + depth
// tokens); so the file holds (tokens - depth) / (seq_len + 1) windows, the rest is not scored.
#pragma once

#include <cstdint>
#include <optional>

#include "core/data/token_file.hpp"
#include "core/model.hpp"

namespace core {

struct TokenEval {
  double lm_loss = 0;              // mean next-token cross-entropy of the main head
  std::optional<double> mtp_loss;  // mean over depths of each depth's mean (none at depth 0)
  int64_t tokens = 0;              // main-head targets scored
  int64_t windows = 0;
};

// `model`: the whole model in one stage (single process). `batch` windows per forward pass.
// Throws DataError when the file holds no whole window or a token outside the vocabulary.
TokenEval evaluate_token_file(Model& model, const data::TokenFile& file, int seq_len, int batch);

}  // namespace core
