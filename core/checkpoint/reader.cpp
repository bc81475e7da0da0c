// Manifest and size checks, the name index over rank files, verified reads, loading a share.
#include "core/checkpoint/reader.hpp"

#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/checkpoint/files.hpp"
#include "core/error.hpp"
#include "optim/sharded_adamw.hpp"

namespace core::checkpoint {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

}  // namespace

CheckpointReader::CheckpointReader(const std::string& dir) : dir_(dir) {
  const std::string mpath = dir + "/" + kManifestFile;
  manifest_ = parse_manifest(read_small_file(mpath, "checkpoint manifest"), mpath);
  bool have_config = false;
  for (size_t i = 0; i < manifest_.files.size(); ++i) {
    const FileEntry& f = manifest_.files[i];
    const std::string path = dir + "/" + f.name;
    paths_.push_back(path);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
      FLOT_THROW(DataError,
                 "checkpoint {}: file {} listed in the manifest is missing ({}); the "
                 "checkpoint is damaged: resume from another one",
                 dir, f.name, std::strerror(errno));
    if (static_cast<int64_t>(st.st_size) != f.bytes)
      FLOT_THROW(DataError,
                 "checkpoint {}: file {} is {} bytes, the manifest says {} ({}); the checkpoint "
                 "is damaged: resume from another one",
                 dir, f.name, static_cast<int64_t>(st.st_size), f.bytes,
                 st.st_size < f.bytes ? "truncated" : "longer than written");
    if (f.name == kConfigFile) {
      const std::string text = read_small_file(path, "checkpoint config");
      check_hash(static_cast<int>(i), XXH3_64bits(text.data(), text.size()));
      config_ = parse_config(text, path);
      have_config = true;
      continue;
    }
    std::vector<TensorInfo> tensors;
    std::map<std::string, std::string> meta;
    try {
      read_safetensors_header(path, tensors, meta);
    } catch (const DataError&) {
      // A damaged header is most likely a damaged file: say so with the checksums.
      check_hash(static_cast<int>(i), digest_file(path).xxh3);
      throw;
    }
    if (meta.count("shapes")) {
      try {
        const nlohmann::json shapes = nlohmann::json::parse(meta["shapes"]);
        for (auto& [name, s] : shapes.items()) {
          auto shape = s.get<std::vector<int64_t>>();
          auto [it, fresh] = shapes_.emplace(name, shape);
          if (!fresh && it->second != shape)
            FLOT_THROW(DataError, "checkpoint {}: {} has shape {} in {} but {} elsewhere", dir,
                       name, shape_str(shape), f.name, shape_str(it->second));
        }
      } catch (const nlohmann::json::exception& e) {
        FLOT_THROW(DataError, "checkpoint {}: {} has malformed shape metadata ({})", dir, f.name,
                   e.what());
      }
    }
    for (auto& t : tensors) {
      const ParsedKey k = parse_key(t.name, path);
      Entry e{static_cast<int>(i), k.begin, k.end < 0 ? t.numel() : k.end, t};
      if (k.end >= 0 && t.numel() != k.end - k.begin)
        FLOT_THROW(DataError, "{}: tensor {} holds {} elements, its key says {}", path, t.name,
                   t.numel(), k.end - k.begin);
      index_[k.kind + "/" + k.name].push_back(std::move(e));
    }
  }
  if (!have_config)
    FLOT_THROW(DataError, "checkpoint {}: the manifest lists no {}", dir, kConfigFile);
  for (auto& [key, entries] : index_)
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
}

CheckpointReader::~CheckpointReader() = default;

void CheckpointReader::check_hash(int file, uint64_t h) const {
  const FileEntry& f = manifest_.files[file];
  if (h != f.xxh3)
    FLOT_THROW(DataError,
               "checkpoint {}: file {} is corrupt: its XXH3-64 checksum is {}, the manifest says "
               "{}; it was not loaded. Resume from another checkpoint (train.resume=<path>)",
               dir_, f.name, hex64(h), hex64(f.xxh3));
}

const SafetensorsFile& CheckpointReader::open(int file) {
  auto it = open_.find(file);
  if (it != open_.end()) return *it->second;
  auto f = std::make_unique<SafetensorsFile>(paths_[file], "checkpoint shard");
  check_hash(file, XXH3_64bits(f->bytes(), static_cast<size_t>(f->size())));
  return *open_.emplace(file, std::move(f)).first->second;
}

bool CheckpointReader::has(const std::string& kind, const std::string& name) const {
  return index_.count(kind + "/" + name) > 0;
}

std::vector<std::string> CheckpointReader::names(const std::string& kind) const {
  std::vector<std::string> out;
  const std::string prefix = kind + "/";
  for (const auto& [key, entries] : index_)
    if (key.compare(0, prefix.size(), prefix) == 0) out.push_back(key.substr(prefix.size()));
  return out;
}

int64_t CheckpointReader::stored_elements(const std::string& kind) const {
  int64_t n = 0;
  const std::string prefix = kind + "/";
  for (const auto& [key, entries] : index_)
    if (key.compare(0, prefix.size(), prefix) == 0)
      for (const Entry& e : entries) n += e.end - e.begin;
  return n;
}

const std::vector<int64_t>& CheckpointReader::shape(const std::string& name) const {
  auto it = shapes_.find(name);
  if (it == shapes_.end())
    FLOT_THROW(DataError,
               "checkpoint {} has no tensor {}; it was written for another model "
               "(compare its config.yaml)",
               dir_, name);
  return it->second;
}

void CheckpointReader::read(const std::string& kind, const std::string& name, int64_t begin,
                            int64_t end, DType dtype, void* dst) {
  auto it = index_.find(kind + "/" + name);
  if (it == index_.end())
    FLOT_THROW(DataError,
               "checkpoint {} has no {} of {}; it was written for another model or "
               "layout's parameters (compare its config.yaml)",
               dir_, kind, name);
  const auto& entries = it->second;
  const size_t es = dtype_size(dtype);
  int64_t at = begin;
  while (at < end) {
    const Entry* hit = nullptr;
    for (const Entry& e : entries)
      if (e.begin <= at && at < e.end) {
        hit = &e;
        break;
      }
    if (!hit)
      FLOT_THROW(DataError,
                 "checkpoint {} lacks elements [{}, {}) of {} of {}: the rank files do "
                 "not cover it; the checkpoint is incomplete or damaged",
                 dir_, at, end, kind, name);
    const int64_t n = std::min(end, hit->end) - at;
    const SafetensorsFile& f = open(hit->file);
    const int64_t ses = st_dtype_size(hit->info.dtype);
    convert_elements(f.data(hit->info) + (at - hit->begin) * ses, hit->info.dtype, n, dtype,
                     static_cast<std::byte*>(dst) + (at - begin) * es, paths_[hit->file]);
    at += n;
  }
}

std::vector<std::string> check_resumable(const Config& saved, const Config& now,
                                         const std::string& dir) {
  // What fixes the parameters' names and shapes; everything else may change on resume.
  static const std::set<std::string> shape_keys = {"model.vocab_size",
                                                   "model.hidden_size",
                                                   "model.num_layers",
                                                   "model.first_dense_layers",
                                                   "model.dense_intermediate_size",
                                                   "model.attention.num_heads",
                                                   "model.attention.q_lora_rank",
                                                   "model.attention.kv_lora_rank",
                                                   "model.attention.qk_nope_head_dim",
                                                   "model.attention.qk_rope_head_dim",
                                                   "model.attention.v_head_dim",
                                                   "model.moe.num_experts",
                                                   "model.moe.num_shared_experts",
                                                   "model.moe.expert_intermediate_size",
                                                   "model.mtp.depth"};
  // Settings of the process, not of the training.
  static const std::set<std::string> quiet = {"train.resume", "train.threads", "run.name",
                                              "checkpoint.dir"};
  std::vector<std::string> notes, bad;
  for (const auto& d : diff_configs(saved, now)) {
    const std::string line = fmt::format("{}: {} -> {}", d.key, d.a, d.b);
    if (shape_keys.count(d.key))
      bad.push_back(line);
    else if (!quiet.count(d.key))
      notes.push_back(line);
  }
  if (!bad.empty())
    FLOT_THROW(ConfigError,
               "cannot resume from {}: the model's shape differs from the checkpoint's ({}): {}. "
               "Use the checkpoint's config ({}/config.yaml) or start a new run "
               "(train.resume=never)",
               dir, "checkpoint -> now", fmt::join(bad, "; "), dir);
  return notes;
}

void load_share(CheckpointReader& r, const RankShare& share) {
  ParamStore& ps = *share.params;
  const size_t es = dtype_size(ps.dtype());
  auto* base = static_cast<std::byte*>(ps.flat_params().data);
  for (const NamedPiece& p : all_tensors(ps)) {
    const auto& stored = r.shape(p.name);
    if (stored != p.shape)
      FLOT_THROW(DataError, "checkpoint {}: {} is {} there, this model's is {}", r.dir(), p.name,
                 shape_str(stored), shape_str(p.shape));
    r.read(kParam, p.name, 0, p.numel(), ps.dtype(), base + p.flat * es);
  }
  for (int b = 0; b < ps.num_buffers(); ++b) {
    const Tensor t = ps.buffer(b);
    const std::vector<int64_t> want(t.shape.begin(), t.shape.begin() + t.ndim);
    if (r.shape(ps.buffer_name(b)) != want)
      FLOT_THROW(DataError, "checkpoint {}: {} is {} there, this model's is {}", r.dir(),
                 ps.buffer_name(b), shape_str(r.shape(ps.buffer_name(b))), shape_str(want));
    r.read(kBuffer, ps.buffer_name(b), 0, numel(want), t.dtype, t.data);
  }
  if (!share.optimizer) return;
  const optim::ShardedAdamW& opt = *share.optimizer;
  const size_t ms = dtype_size(opt.moment_dtype());
  for (const char* kind : {kExpAvg, kExpAvgSq}) {
    const Tensor m = kind == kExpAvg ? opt.moment1() : opt.moment2();
    if (!r.manifest().has_optimizer) {
      std::memset(m.data, 0, m.bytes());
      continue;
    }
    for (const auto& piece : opt.pieces())
      for (const NamedPiece& p : named_pieces(ps, {piece.begin, piece.end}))
        r.read(kind, p.name, p.begin, p.end, opt.moment_dtype(),
               static_cast<std::byte*>(m.data) + (piece.moment + p.flat - piece.begin) * ms);
  }
}

}  // namespace core::checkpoint
