// Sequential reads of a token file's stream with the vocabulary check.
#include "core/data/token_file.hpp"

#include "core/data/sources.hpp"
#include "core/error.hpp"

namespace core::data {

TokenFile::TokenFile(const std::string& path)
    : s_(std::make_unique<detail::TokenStream>(detail::open_token_stream(path))) {
  s_->file.advise_sequential();
}

TokenFile::~TokenFile() = default;

int64_t TokenFile::size() const {
  return s_->count;
}

std::string TokenFile::describe() const {
  return fmt::format("{} {} ({} tokens)", s_->label, s_->path, s_->count);
}

void TokenFile::read(int64_t begin, int64_t n, int64_t vocab, int32_t* out) const {
  FLOT_CHECK(begin >= 0 && n >= 0 && begin + n <= s_->count, "tokens [{}, {}) of {}", begin,
             begin + n, s_->count);
  const int width = detail::token_bytes(s_->type);
  const unsigned char* p = s_->file.data() + s_->offset + begin * width;
  for (int64_t i = 0; i < n; ++i) {
    int64_t v = 0;
    switch (s_->type) {
      case detail::TokenType::u8:
        v = p[i];
        break;
      case detail::TokenType::i16:
        v = detail::load<int16_t>(p + 2 * i);
        break;
      case detail::TokenType::u16:
        v = detail::load<uint16_t>(p + 2 * i);
        break;
      case detail::TokenType::i32:
        v = detail::load<int32_t>(p + 4 * i);
        break;
      case detail::TokenType::u32:
        v = detail::load<uint32_t>(p + 4 * i);
        break;
      case detail::TokenType::i64:
        v = detail::load<int64_t>(p + 8 * i);
        break;
    }
    if (v < 0 || v >= vocab)
      FLOT_THROW(DataError,
                 "{}: token {} at position {} is outside the model's vocabulary [0, {}); the file "
                 "was tokenized for another model",
                 s_->path, v, begin + i, vocab);
    out[i] = static_cast<int32_t>(v);
  }
}

}  // namespace core::data
