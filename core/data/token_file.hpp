// TokenFile: a pre-tokenized corpus read front to back (flotilla eval): an llm.c token file
// (.bin with its 1024-byte header) or a Megatron .bin/.idx pair, checked against its headers and
// exact sizes at open exactly as for data.kind = tokens (docs/data-formats.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace core::data {

namespace detail {
struct TokenStream;
}

class TokenFile {
 public:
  // Throws DataError for a missing, truncated or malformed file.
  explicit TokenFile(const std::string& path);
  ~TokenFile();
  int64_t size() const;  // tokens
  // Tokens [begin, begin + n) as int32. DataError naming the file and the position for a token
  // outside [0, vocab).
  void read(int64_t begin, int64_t n, int64_t vocab, int32_t* out) const;
  std::string describe() const;

 private:
  std::unique_ptr<detail::TokenStream> s_;
};

}  // namespace core::data
