// Pre-tokenized corpora: llm.c token files (.bin with a 1024-byte header) and Megatron-LM
// MMapIndexedDataset pairs (PREFIX.bin + PREFIX.idx), both memory-mapped and checked against
// their headers and exact sizes before any window is read. Layouts: docs/data-formats.md.
#include <sys/stat.h>

#include <cstring>

#include "core/data/sources.hpp"
#include "core/error.hpp"

namespace core::data::detail {
namespace {

constexpr int32_t kLlmcMagicGpt2 = 20240520;    // version 1, uint16 tokens
constexpr int32_t kLlmcMagicLlama3 = 20240801;  // version 7, uint32 tokens
constexpr int64_t kLlmcHeaderBytes = 256 * 4;

constexpr char kMegatronMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr int64_t kMegatronHeaderBytes = 9 + 8 + 1 + 8 + 8;

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string hex_bytes(const unsigned char* p, int64_t n) {
  std::string out;
  for (int64_t i = 0; i < n; ++i) out += fmt::format("{}{:02x}", i ? " " : "", p[i]);
  return out;
}

TokenStream llmc_stream(const std::string& path) {
  TokenStream s;
  s.file = MmapFile(path, "llm.c token file (data.path)");
  s.path = path;
  const int64_t size = s.file.size();
  if (size < kLlmcHeaderBytes)
    FLOT_THROW(DataError,
               "llm.c token file '{}' is {} bytes, shorter than its 1024-byte header (256 int32); "
               "the file is truncated or is not an llm.c token file. Regenerate it with llm.c's "
               "dev/data/data_common.py write_datafile().",
               path, size);
  const unsigned char* h = s.file.data();
  const int32_t magic = load<int32_t>(h), version = load<int32_t>(h + 4),
                ntok = load<int32_t>(h + 8);
  int32_t want_version = 0;
  if (magic == kLlmcMagicGpt2) {
    want_version = 1;
    s.type = TokenType::u16;
  } else if (magic == kLlmcMagicLlama3) {
    want_version = 7;
    s.type = TokenType::u32;
  } else {
    FLOT_THROW(DataError,
               "data.path '{}' is not an llm.c token file: header[0] (magic) is {}, expected "
               "{} (GPT-2, uint16 tokens) or {} (LLaMA-3, uint32 tokens). Write the file with "
               "llm.c's write_datafile(); for a Megatron dataset put PREFIX.idx next to "
               "PREFIX.bin and pass PREFIX as data.path.",
               path, magic, kLlmcMagicGpt2, kLlmcMagicLlama3);
  }
  if (version != want_version)
    FLOT_THROW(DataError,
               "llm.c token file '{}': magic {} expects header[1] (version) = {}, found {}. The "
               "file was written by an incompatible tool or is corrupt: regenerate it with llm.c's "
               "write_datafile().",
               path, magic, want_version, version);
  if (ntok < 0)
    FLOT_THROW(DataError, "llm.c token file '{}': header[2] (token count) is negative ({})", path,
               ntok);
  const int width = token_bytes(s.type);
  const int64_t expected = kLlmcHeaderBytes + static_cast<int64_t>(ntok) * width;
  if (size != expected)
    FLOT_THROW(DataError,
               "llm.c token file '{}' is {} bytes, but its header promises {} {} tokens: 1024 + "
               "{} * {} = {} bytes. The file is {}; regenerate it.",
               path, size, ntok, token_type_name(s.type), ntok, width, expected,
               size < expected ? "truncated (an interrupted write or copy?)"
                               : "longer than its header says (wrong header or appended data)");
  s.offset = kLlmcHeaderBytes;
  s.count = ntok;
  s.label = fmt::format("tokens (llm.c {})", token_type_name(s.type));
  return s;
}

TokenStream megatron_stream(const std::string& prefix) {
  const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
  MmapFile idx(idx_path, "Megatron index (PREFIX.idx of data.path)");
  const int64_t isize = idx.size();
  const unsigned char* p = idx.data();
  if (isize < kMegatronHeaderBytes)
    FLOT_THROW(DataError,
               "Megatron index '{}' is {} bytes, shorter than its {}-byte header; the file is "
               "truncated: regenerate it with Megatron-LM's tools/preprocess_data.py.",
               idx_path, isize, kMegatronHeaderBytes);
  if (std::memcmp(p, kMegatronMagic, sizeof(kMegatronMagic)) != 0)
    FLOT_THROW(DataError,
               "'{}' is not a Megatron MMapIndexedDataset index: its first 9 bytes are [{}], "
               "expected \"MMIDIDX\\0\\0\" [4d 4d 49 44 49 44 58 00 00]. Only the mmap format of "
               "Megatron-LM / fairseq is supported; regenerate with tools/preprocess_data.py.",
               idx_path, hex_bytes(p, 9));
  const uint64_t version = load<uint64_t>(p + 9);
  if (version != 1)
    FLOT_THROW(DataError,
               "Megatron index '{}': version is {}, expected 1; regenerate it with Megatron-LM's "
               "tools/preprocess_data.py.",
               idx_path, version);
  const int code = p[17];
  TokenType type;
  switch (code) {
    case 1: type = TokenType::u8; break;
    case 3: type = TokenType::i16; break;
    case 4: type = TokenType::i32; break;
    case 5: type = TokenType::i64; break;
    case 8: type = TokenType::u16; break;
    case 2:
      FLOT_THROW(DataError,
                 "Megatron index '{}': dtype code 2 (int8) cannot hold token ids above 127; "
                 "re-export with uint16 or int32 tokens.",
                 idx_path);
    case 6:
    case 7:
      FLOT_THROW(DataError,
                 "Megatron index '{}': dtype code {} ({}) is floating point, not token ids; "
                 "token datasets use codes 1 (uint8), 3 (int16), 4 (int32), 5 (int64) or 8 "
                 "(uint16).",
                 idx_path, code, code == 6 ? "float64" : "float32");
    default:
      FLOT_THROW(DataError,
                 "Megatron index '{}': unknown dtype code {}; expected 1 (uint8), 3 (int16), "
                 "4 (int32), 5 (int64) or 8 (uint16).",
                 idx_path, code);
  }
  const uint64_t S = load<uint64_t>(p + 18), D = load<uint64_t>(p + 26);
  // Counts past 2^40 cannot be real and would overflow the size arithmetic below.
  const uint64_t kCountLimit = uint64_t{1} << 40;
  const int64_t expected_idx =
      (S < kCountLimit && D < kCountLimit)
          ? kMegatronHeaderBytes + 12 * static_cast<int64_t>(S) + 8 * static_cast<int64_t>(D)
          : -1;
  if (isize != expected_idx)
    FLOT_THROW(DataError,
               "Megatron index '{}' is {} bytes, but its header counts {} sequences and {} "
               "document indices: 34 + 4*{} (sizes) + 8*{} (pointers) + 8*{} (doc_idx) = {} "
               "bytes. The file is truncated or has extra data (multimodal indices are not "
               "supported); regenerate it.",
               idx_path, isize, S, D, S, S, D,
               expected_idx >= 0 ? fmt::format("{}", expected_idx) : std::string("overflow"));

  // Sequences are concatenated into one stream, which is only the .bin itself if they are stored
  // back to back in order -- what Megatron's writer always produces.
  const int width = token_bytes(type);
  const unsigned char* sizes = p + kMegatronHeaderBytes;
  const unsigned char* pointers = sizes + 4 * S;
  int64_t end = 0;
  for (uint64_t i = 0; i < S; ++i) {
    const int32_t n = load<int32_t>(sizes + 4 * i);
    const int64_t ptr = load<int64_t>(pointers + 8 * i);
    if (n < 0 || ptr != end)
      FLOT_THROW(DataError,
                 "Megatron index '{}': sequence {} has size {} and byte offset {}, expected a "
                 "non-negative size at offset {} (sequences stored back to back); the index is "
                 "corrupt or from an unsupported writer.",
                 idx_path, i, n, ptr, end);
    end += static_cast<int64_t>(n) * width;
  }
  TokenStream s;
  s.file = MmapFile(bin_path, "Megatron data (PREFIX.bin of data.path)");
  if (s.file.size() != end)
    FLOT_THROW(DataError,
               "Megatron data '{}' is {} bytes, but its index '{}' describes {} sequences ending "
               "at byte {}; the .bin is {}, or the .bin and .idx come from different runs. "
               "Regenerate both.",
               bin_path, s.file.size(), idx_path, S, end,
               s.file.size() < end ? "truncated" : "longer than the index says");
  s.offset = 0;
  s.count = end / width;
  s.type = type;
  s.path = prefix;
  s.label = fmt::format("tokens (megatron {}, {} sequences)", token_type_name(type), S);
  return s;
}

}  // namespace

std::unique_ptr<Dataset> make_token_files(const Config& c) {
  if (c.data.path.empty())
    FLOT_THROW(ConfigError,
               "data.kind = tokens needs data.path: an llm.c token file (.bin) or a Megatron "
               "prefix (PREFIX.bin + PREFIX.idx)");
  return std::make_unique<StreamDataset>(open_token_stream(c.data.path), c, /*check_range=*/true);
}

TokenStream open_token_stream(const std::string& path) {
  if (ends_with(path, ".idx")) return megatron_stream(path.substr(0, path.size() - 4));
  if (ends_with(path, ".bin")) {
    const std::string prefix = path.substr(0, path.size() - 4);
    // An llm.c magic wins; otherwise a sibling .idx marks a Megatron pair.
    if (file_exists(prefix + ".idx")) {
      bool llmc = false;
      if (file_exists(path)) {
        MmapFile f(path, "token file (data.path)");
        if (f.size() >= 4) {
          const int32_t magic = load<int32_t>(f.data());
          llmc = magic == kLlmcMagicGpt2 || magic == kLlmcMagicLlama3;
        }
      }
      if (!llmc) return megatron_stream(prefix);
    }
    return llmc_stream(path);
  }
  if (file_exists(path + ".bin") || file_exists(path + ".idx")) return megatron_stream(path);
  if (file_exists(path)) return llmc_stream(path);
  FLOT_THROW(DataError,
             "data.path '{}' not found: data.kind = tokens reads an llm.c token file (give its "
             "path) or a Megatron dataset (give PREFIX, PREFIX.bin or PREFIX.idx; both "
             "PREFIX.bin and PREFIX.idx must exist). Relative paths are relative to the working "
             "directory.",
             path);
}

}  // namespace core::data::detail
