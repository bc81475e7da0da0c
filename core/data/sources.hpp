// Internal to core/data: the counter-based hash every source draws from, the token-stream dataset
// shared by the text and token-file kinds, and one factory per data.kind.
//
// Invariants: every random choice is counter_hash(seed, stream tag, index, position) -- a pure
// function, never a stateful generator -- so window contents depend only on (seed, split, index)
// and any rank can produce any window in any order. Token streams are read-only mappings; windows
// never cross the train / validation boundary.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "core/config.hpp"
#include "core/data/dataset.hpp"
#include "core/data/mmap_file.hpp"

namespace core::data::detail {

// splitmix64's finalizer (with its golden-ratio increment): a bijection with full avalanche.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Chaining the finalizer makes (seed, a, b, c) -> hash collision-free in each argument separately
// and well mixed jointly, which is all a counter-based generator needs.
inline uint64_t counter_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  return mix64(mix64(mix64(mix64(seed) ^ a) ^ b) ^ c);
}

// Uniform integer in [0, n) by multiply-high: bias below n / 2^64, far under any measurable level.
inline uint64_t uniform_below(uint64_t h, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(h) * n) >> 64);
}

// Distinct stream tags keep train and validation windows (and the synthetic successor table)
// independent draws from the same seed.
inline uint64_t split_tag(Split s) {
  return s == Split::train ? 0x747261696e5f5f5full /* "train___" */
                           : 0x76616c5f5f5f5f5full /* "val_____" */;
}

// A little-endian value at any address: the .idx arrays are not aligned, and memcpy is the legal
// unaligned read (compilers turn it into one load).
template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

enum class TokenType { u8, i16, u16, i32, u32, i64 };
int token_bytes(TokenType t);
const char* token_type_name(TokenType t);

// A flat array of little-endian integer tokens inside a mapped file.
struct TokenStream {
  MmapFile file;
  int64_t offset = 0;  // byte offset of token 0 in the file
  int64_t count = 0;   // tokens
  TokenType type = TokenType::u8;
  std::string label;   // "text", "tokens (llm.c uint16)", ...: starts describe()
  std::string path;    // as the user gave it
  std::string units = "tokens";
};

// The last val_fraction of the stream (rounded to the nearest token, at least one window) is
// validation; the rest is training, which must also hold one window.
struct Regions {
  int64_t train_begin = 0, train_len = 0, val_begin = 0, val_len = 0;
};
Regions split_regions(int64_t count, double val_fraction, int64_t window_len,
                      const std::string& path, const std::string& units);

// Windows start at counter-hashed offsets inside their split's region. Token values are checked
// against the vocabulary once at open time when the stream is small enough to scan cheaply,
// otherwise in every window read.
class StreamDataset final : public Dataset {
 public:
  // check_range = false when the format itself bounds the tokens (bytes with vocab >= 256).
  // Streams shorter than scan_limit tokens are checked in full here, longer ones per window.
  StreamDataset(TokenStream stream, const Config& c, bool check_range,
                int64_t scan_limit = kScanLimit);
  void window(Split split, int64_t index, int32_t* out) const override;
  int64_t window_len() const override { return window_len_; }
  std::string describe() const override;
  const Regions& regions() const { return regions_; }

  // A full scan costs about 0.1 s per 1e8 tokens: worth it below that, too slow above.
  static constexpr int64_t kScanLimit = 100'000'000;

 private:
  void scan_all() const;
  TokenStream s_;
  Regions regions_;
  uint64_t seed_;
  int64_t window_len_, vocab_;
  bool check_each_window_;
};

std::unique_ptr<Dataset> make_synthetic(const Config& c);
std::unique_ptr<Dataset> make_text(const Config& c);
// llm.c .bin or Megatron .bin/.idx, told apart by the path and the file's first bytes.
std::unique_ptr<Dataset> make_token_files(const Config& c);
// The token stream of such a file, checked against its headers and sizes (DataError).
TokenStream open_token_stream(const std::string& path);

}  // namespace core::data::detail
