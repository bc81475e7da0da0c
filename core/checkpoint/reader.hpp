// Reading a checkpoint by global name, whatever layout wrote it.
//
// The reader checks the manifest, every listed file's existence and exact size, and the config
// at open; it indexes the tensors of every rank file from their headers alone. A read asks for
// elements [begin, end) of one named tensor of one kind and is served from whichever pieces
// cover them (a ZeRO-1 shard of another layout may have cut the tensor anywhere); a gap is a
// DataError. Every file a process reads from is verified against the manifest's XXH3 checksum
// before its first byte is used, so a corrupt file is reported with its name and both hashes and
// never loaded. A rank reads only what it holds: the files of other pipeline stages or experts
// are never hashed or mapped by it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/checkpoint/manifest.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/checkpoint/share.hpp"
#include "core/config.hpp"

namespace core::checkpoint {

class CheckpointReader {
 public:
  // `dir`: a checkpoint directory (see resolve_checkpoint_path for user paths). DataError for
  // anything missing, truncated, malformed or corrupt.
  explicit CheckpointReader(const std::string& dir);
  ~CheckpointReader();
  const std::string& dir() const { return dir_; }
  const Manifest& manifest() const { return manifest_; }
  const Config& config() const { return config_; }

  bool has(const std::string& kind, const std::string& name) const;
  // Names stored for a kind, sorted.
  std::vector<std::string> names(const std::string& kind) const;
  // The full shape of a named parameter or buffer (recorded by the ranks that wrote it).
  const std::vector<int64_t>& shape(const std::string& name) const;
  // Elements stored for a kind, all names and pieces together (each element is written once, so
  // this is the model's count whatever layout wrote the checkpoint).
  int64_t stored_elements(const std::string& kind) const;
  // Elements [begin, end) of `kind`/`name` into dst, converted to `dtype`.
  void read(const std::string& kind, const std::string& name, int64_t begin, int64_t end,
            DType dtype, void* dst);

 private:
  struct Entry {
    int file;
    int64_t begin, end;  // element range within the named tensor
    TensorInfo info;
  };
  const SafetensorsFile& open(int file);
  void check_hash(int file, uint64_t xxh3) const;  // DataError naming the file and both hashes
  std::string dir_;
  Manifest manifest_;
  Config config_;
  std::vector<std::string> paths_;                   // by file index (manifest order)
  std::map<std::string, std::vector<Entry>> index_;  // "kind/name" -> pieces, by begin
  std::map<std::string, std::vector<int64_t>> shapes_;
  std::map<int, std::unique_ptr<SafetensorsFile>> open_;
};

// Keys whose change between the checkpoint's config and the run's would change parameter names
// or shapes: ConfigError listing them. Other changed keys are returned as notes
// ("optim.lr: 0.003 -> 0.001").
std::vector<std::string> check_resumable(const Config& saved, const Config& now,
                                         const std::string& dir);

// Loads everything `share` holds: each parameter and buffer whole, by name; with an optimizer,
// the AdamW moments of its owned ranges (zero when the checkpoint has none, e.g. imported
// weights). Not collective; callers agree on failure.
void load_share(CheckpointReader& r, const RankShare& share);

}  // namespace core::checkpoint
