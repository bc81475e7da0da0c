// make_dataset: checks the settings every kind shares, then builds the kind named by data.kind.
#include "core/data/dataset.hpp"

#include "core/data/sources.hpp"
#include "core/error.hpp"

namespace core::data {

std::unique_ptr<Dataset> make_dataset(const Config& c) {
  if (c.train.seq_len < 1)
    FLOT_THROW(ConfigError, "train.seq_len = {} must be at least 1", c.train.seq_len);
  if (c.model.mtp.depth < 0)
    FLOT_THROW(ConfigError, "model.mtp.depth = {} must be >= 0", c.model.mtp.depth);
  if (c.model.vocab_size < 1)
    FLOT_THROW(ConfigError, "model.vocab_size = {} must be positive", c.model.vocab_size);
  // `!(x >= 0)` also rejects NaN.
  if (!(c.data.val_fraction >= 0.0) || c.data.val_fraction >= 1.0)
    FLOT_THROW(ConfigError, "data.val_fraction = {} must be in [0, 1)", c.data.val_fraction);
  if (c.data.kind == "synthetic") return detail::make_synthetic(c);
  if (c.data.kind == "text") return detail::make_text(c);
  if (c.data.kind == "tokens") return detail::make_token_files(c);
  FLOT_THROW(ConfigError, "data.kind = '{}' is not one of synthetic | text | tokens", c.data.kind);
}

}  // namespace core::data
