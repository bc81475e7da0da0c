// Text data: any file read as byte-level tokens (token = byte value, 0..255), memory-mapped.
// Bytes, not characters: UTF-8 multi-byte characters become several tokens, and any binary file
// works the same way.
#include "core/data/sources.hpp"
#include "core/error.hpp"

namespace core::data::detail {

std::unique_ptr<Dataset> make_text(const Config& c) {
  if (c.data.path.empty())
    FLOT_THROW(ConfigError, "data.kind = text needs data.path (a text file read as bytes)");
  if (c.model.vocab_size < 256)
    FLOT_THROW(DataError,
               "data.kind = text uses byte tokens 0..255, but model.vocab_size = {}; set "
               "model.vocab_size to at least 256",
               c.model.vocab_size);
  TokenStream s;
  s.file = MmapFile(c.data.path, "text file (data.path)");
  s.offset = 0;
  s.count = s.file.size();
  s.type = TokenType::u8;
  s.label = "text (bytes)";
  s.path = c.data.path;
  s.units = "bytes";
  // vocab_size >= 256 bounds every byte, so no range check is needed.
  return std::make_unique<StreamDataset>(std::move(s), c, /*check_range=*/false);
}

}  // namespace core::data::detail
