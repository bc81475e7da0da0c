// StreamDataset: windows at counter-hashed offsets of a mapped token stream, split into a training
// region and a trailing validation region; token-range checks at open time or per window.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/data/sources.hpp"
#include "core/error.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token files are little-endian and read in place; a big-endian host would need swaps");

namespace core::data::detail {
namespace {

// Tag of the window-offset draw, so it never coincides with another use of the same counters.
constexpr uint64_t kOffsetTag = 0x6f66667365745f5full;  // "offset__"

// Copies n tokens, returning the index of the first one outside [0, vocab), or -1.
template <class T>
int64_t copy_tokens(const unsigned char* p, int64_t n, int32_t* out, int64_t vocab, bool check) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = static_cast<int64_t>(load<T>(p + i * sizeof(T)));
    if (check && (v < 0 || v >= vocab)) return i;
    out[i] = static_cast<int32_t>(v);
  }
  return -1;
}

template <class T>
int64_t first_out_of_range(const unsigned char* p, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = static_cast<int64_t>(load<T>(p + i * sizeof(T)));
    if (v < 0 || v >= vocab) return i;
  }
  return -1;
}

template <class T>
void min_max(const unsigned char* p, int64_t n, int64_t& lo, int64_t& hi) {
  T mn = std::numeric_limits<T>::max(), mx = std::numeric_limits<T>::lowest();
  for (int64_t i = 0; i < n; ++i) {
    const T v = load<T>(p + i * sizeof(T));
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  lo = static_cast<int64_t>(mn);
  hi = static_cast<int64_t>(mx);
}

// Calls f(T{}) with T the C++ type of the token type.
template <class F>
auto dispatch(TokenType t, F&& f) {
  switch (t) {
    case TokenType::u8: return f(uint8_t{});
    case TokenType::i16: return f(int16_t{});
    case TokenType::u16: return f(uint16_t{});
    case TokenType::i32: return f(int32_t{});
    case TokenType::u32: return f(uint32_t{});
    case TokenType::i64: return f(int64_t{});
  }
  throw InternalError("unknown token type");
}

}  // namespace

int token_bytes(TokenType t) {
  return dispatch(t, [](auto x) { return static_cast<int>(sizeof(x)); });
}

const char* token_type_name(TokenType t) {
  switch (t) {
    case TokenType::u8: return "uint8";
    case TokenType::i16: return "int16";
    case TokenType::u16: return "uint16";
    case TokenType::i32: return "int32";
    case TokenType::u32: return "uint32";
    case TokenType::i64: return "int64";
  }
  return "?";
}

Regions split_regions(int64_t count, double f, int64_t L, const std::string& path,
                      const std::string& units) {
  auto val_len = [&](int64_t n) {
    return std::max<int64_t>(L, std::llround(static_cast<double>(n) * f));
  };
  Regions r;
  r.val_len = val_len(count);
  r.train_len = count - r.val_len;
  if (r.train_len < L) {
    // The smallest size that fits: start from the closed form and step past rounding.
    int64_t need = std::max<int64_t>(
        2 * L, static_cast<int64_t>(std::floor(static_cast<double>(L) / (1.0 - f))));
    while (need - val_len(need) < L) ++need;
    FLOT_THROW(DataError,
               "data.path '{}' is too short: it holds {} {} but windows of {} {} "
               "(train.seq_len + 1 + model.mtp.depth) with data.val_fraction = {} need at least "
               "{} {} (one training and one validation window). Use a longer file, or lower "
               "train.seq_len or data.val_fraction.",
               path, count, units, L, units, f, need, units);
  }
  r.train_begin = 0;
  r.val_begin = r.train_len;
  return r;
}

StreamDataset::StreamDataset(TokenStream stream, const Config& c, bool check_range,
                             int64_t scan_limit)
    : s_(std::move(stream)),
      seed_(c.run.seed),
      window_len_(static_cast<int64_t>(c.train.seq_len) + 1 + c.model.mtp.depth),
      vocab_(c.model.vocab_size),
      check_each_window_(check_range) {
  regions_ = split_regions(s_.count, c.data.val_fraction, window_len_, s_.path, s_.units);
  if (check_range && s_.count < scan_limit) {
    s_.file.advise_sequential();
    scan_all();
    check_each_window_ = false;
  }
  s_.file.advise_random();
}

void StreamDataset::scan_all() const {
  const unsigned char* p = s_.file.data() + s_.offset;
  int64_t lo = 0, hi = 0;
  dispatch(s_.type, [&](auto x) { min_max<decltype(x)>(p, s_.count, lo, hi); });
  if (lo >= 0 && hi < vocab_) return;
  const int64_t pos = dispatch(s_.type, [&](auto x) {
    return first_out_of_range<decltype(x)>(p, s_.count, vocab_);
  });
  const int64_t bad = dispatch(s_.type, [&](auto x) {
    return static_cast<int64_t>(load<decltype(x)>(p + pos * sizeof(x)));
  });
  if (bad < 0)
    FLOT_THROW(DataError,
               "data.path '{}' ({}): token {} at token position {} is negative; token files must "
               "hold ids in [0, model.vocab_size). The file is probably not {} tokens: "
               "re-export it.",
               s_.path, s_.label, bad, pos, token_type_name(s_.type));
  FLOT_THROW(DataError,
             "data.path '{}' ({}): token {} at token position {} is outside the model's vocabulary "
             "(model.vocab_size = {}; the largest token in the file is {}). Set model.vocab_size "
             "to at least {}, or tokenize the corpus with the model's tokenizer.",
             s_.path, s_.label, bad, pos, vocab_, hi, hi + 1);
}

void StreamDataset::window(Split split, int64_t index, int32_t* out) const {
  FLOT_CHECK(index >= 0, "window index {} must be non-negative", index);
  const bool train = split == Split::train;
  const int64_t begin = train ? regions_.train_begin : regions_.val_begin;
  const int64_t len = train ? regions_.train_len : regions_.val_len;
  const uint64_t h = counter_hash(seed_, split_tag(split), static_cast<uint64_t>(index), kOffsetTag);
  const int64_t start =
      begin + static_cast<int64_t>(uniform_below(h, static_cast<uint64_t>(len - window_len_ + 1)));
  const int width = token_bytes(s_.type);
  const unsigned char* p = s_.file.data() + s_.offset + start * width;
  const int64_t bad = dispatch(s_.type, [&](auto x) {
    return copy_tokens<decltype(x)>(p, window_len_, out, vocab_, check_each_window_);
  });
  if (bad >= 0) {
    const int64_t v = dispatch(s_.type, [&](auto x) {
      return static_cast<int64_t>(load<decltype(x)>(p + bad * sizeof(x)));
    });
    FLOT_THROW(DataError,
               "data.path '{}' ({}): token {} at token position {} ({} window {}) is outside "
               "[0, model.vocab_size = {}). Set model.vocab_size above the largest token id, or "
               "tokenize the corpus with the model's tokenizer.",
               s_.path, s_.label, v, start + bad, train ? "train" : "val", index, vocab_);
  }
}

std::string StreamDataset::describe() const {
  return fmt::format("{}: {}, {} {}, train {} / val {} {}, windows of {} tokens", s_.label,
                     s_.path, s_.count, s_.units, regions_.train_len, regions_.val_len, s_.units,
                     window_len_);
}

}  // namespace core::data::detail
