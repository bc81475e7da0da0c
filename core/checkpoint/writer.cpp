// The save protocol of writer.hpp: rank files, agreement, commit by rename, pruning.
#include "core/checkpoint/writer.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "core/checkpoint/collective.hpp"
#include "core/checkpoint/files.hpp"
#include "core/error.hpp"
#include "optim/sharded_adamw.hpp"
#include "parallel/communicator.hpp"

namespace core::checkpoint {
namespace fs = std::filesystem;
namespace {

// Runs f, returning its error message ("" when it succeeded).
template <class F>
std::string attempt(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Throws the agreed failure on every rank.
void throw_if_failed(const Agreement& a, const std::string& what) {
  if (a.failed) FLOT_THROW(Error, "{}: rank {}: {}", what, a.rank, a.message);
}

void remove_quietly(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
}

// Leftovers of interrupted saves and prunes.
void remove_leftovers(const fs::path& root) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(".tmp-step-", 0) == 0 || n.rfind(".del-step-", 0) == 0) remove_quietly(e.path());
  }
}

void rename_checked(const fs::path& from, const fs::path& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw_io(fmt::format("cannot rename {} to", from.string()), to.string(), errno);
}

struct Block {
  const void* data;
  size_t bytes;
};

// The moments of the flat range [flat, flat + n): inside one optimizer piece (the written ranges
// lie inside the owned ones).
int64_t moment_offset(const optim::ShardedAdamW& opt, int64_t flat, int64_t n) {
  const auto& pieces = opt.pieces();
  auto it =
      std::upper_bound(pieces.begin(), pieces.end(), flat,
                       [](int64_t f, const optim::ShardedAdamW::Piece& p) { return f < p.begin; });
  FLOT_CHECK(it != pieces.begin(), "flat element {} is not owned by the optimizer", flat);
  --it;
  FLOT_CHECK(flat + n <= it->end, "flat range [{}, {}) leaves the optimizer piece [{}, {})", flat,
             flat + n, it->begin, it->end);
  return it->moment + (flat - it->begin);
}

FileDigest write_rank_file(const std::string& path, const RankShare& share, int rank,
                           int64_t step) {
  const ParamStore& ps = *share.params;
  const size_t es = dtype_size(ps.dtype());
  std::vector<NamedPiece> pieces;
  for (const auto& r : share.writes)
    for (auto& p : named_pieces(ps, r)) pieces.push_back(std::move(p));
  std::vector<TensorInfo> tensors;
  std::vector<Block> blocks;
  nlohmann::json shapes = nlohmann::json::object();
  auto add = [&](const std::string& kind, const NamedPiece& p, const char* dtype, const void* data,
                 size_t bytes) {
    tensors.push_back(
        {piece_key(kind, p), dtype, p.whole() ? p.shape : std::vector<int64_t>{p.numel()}, 0, 0});
    blocks.push_back({data, bytes});
  };
  const auto* base = static_cast<const std::byte*>(ps.flat_params().data);
  for (const auto& p : pieces) {
    add(kParam, p, st_dtype_of(ps.dtype()), base + p.flat * es, p.numel() * es);
    shapes[p.name] = p.shape;
  }
  if (share.optimizer) {
    const optim::ShardedAdamW& opt = *share.optimizer;
    const size_t ms = dtype_size(opt.moment_dtype());
    for (const char* kind : {kExpAvg, kExpAvgSq}) {
      const auto* m =
          static_cast<const std::byte*>((kind == kExpAvg ? opt.moment1() : opt.moment2()).data);
      for (const auto& p : pieces)
        add(kind, p, st_dtype_of(opt.moment_dtype()),
            m + moment_offset(opt, p.flat, p.numel()) * ms, p.numel() * ms);
    }
  }
  if (share.write_buffers)
    for (int b = 0; b < ps.num_buffers(); ++b) {
      const Tensor t = ps.buffer(b);
      NamedPiece whole{ps.buffer_name(b),
                       std::vector<int64_t>(t.shape.begin(), t.shape.begin() + t.ndim), 0,
                       t.numel(), 0};
      add(kBuffer, whole, st_dtype_of(t.dtype), t.data, t.bytes());
      shapes[whole.name] = whole.shape;
    }
  std::map<std::string, std::string> meta{{"format", "flotilla-checkpoint-shard"},
                                          {"rank", std::to_string(rank)},
                                          {"step", std::to_string(step)},
                                          {"shapes", shapes.dump()}};
  SafetensorsWriter w(path, tensors, meta);
  for (const auto& b : blocks) w.write(b.data, b.bytes);
  return w.finish();
}

}  // namespace

void prune_checkpoints(const std::string& root, int keep, const std::string& protect) {
  if (keep <= 0) return;
  auto found = list_checkpoints(root);
  const int excess = static_cast<int>(found.size()) - keep;
  for (int i = 0; i < excess && i + 1 < static_cast<int>(found.size()); ++i) {
    std::error_code ec;
    if (fs::equivalent(found[i].path, protect, ec)) continue;
    const fs::path doomed =
        fs::path(root) / (".del-" + fs::path(found[i].path).filename().string());
    remove_quietly(doomed);
    fs::rename(found[i].path, doomed, ec);
    if (!ec) remove_quietly(doomed);
  }
}

SaveResult save_checkpoint(const std::string& root, const RankShare& share,
                           const SaveRequest& req) {
  const auto t0 = std::chrono::steady_clock::now();
  parallel::Communicator* world = share.world;
  const int rank = world ? world->rank() : 0;
  const int64_t step = req.progress.step;
  const std::string name = checkpoint_name(step);
  const fs::path tmp = fs::path(root) / (".tmp-" + name), final_dir = fs::path(root) / name;
  const std::string what = fmt::format("saving checkpoint {}", final_dir.string());

  // 1. the temporary directory
  throw_if_failed(agree(world, rank != 0 ? "" : attempt([&] {
                          std::error_code ec;
                          fs::create_directories(root, ec);
                          if (ec) throw_io("cannot create directory", root, ec.value());
                          remove_leftovers(root);
                          fs::create_directory(tmp, ec);
                          if (ec) throw_io("cannot create directory", tmp.string(), ec.value());
                        })),
                  what);

  // 2. every rank's share
  FileDigest mine;
  const std::string file = rank_file_name(rank);
  std::string err =
      attempt([&] { mine = write_rank_file((tmp / file).string(), share, rank, step); });
  if (req.pause_s > 0) {
    std::fprintf(stderr,
                 "test hook: rank %d (pid %d) pauses %.1f s inside the save of step %lld "
                 "(FLOTILLA_TEST_SAVE_PAUSE_S)\n",
                 rank, static_cast<int>(::getpid()), req.pause_s, static_cast<long long>(step));
    std::fflush(stderr);
    std::this_thread::sleep_for(std::chrono::duration<double>(req.pause_s));
  }
  Agreement written = agree(world, err);
  if (written.failed && rank == 0) remove_quietly(tmp);
  throw_if_failed(written, what);

  // 3. sizes and hashes to rank 0, which commits
  const std::vector<double> all =
      gather_all(world, {static_cast<double>(mine.bytes), static_cast<double>(mine.xxh3 >> 32),
                         static_cast<double>(mine.xxh3 & 0xffffffffu)});
  SaveResult res;
  res.path = final_dir.string();
  Manifest m;
  m.source = req.source;
  m.progress = req.progress;
  m.has_optimizer = share.optimizer != nullptr;
  if (share.optimizer)
    m.moment_dtype = share.optimizer->moment_dtype() == DType::bf16 ? "bf16" : "fp32";
  m.data = req.data;
  m.layout = req.layout;
  m.rng = {{"state", nullptr},
           {"note",
            "training draws no random numbers after initialization: parameter init and "
            "data windows are counter-based hashes of (run.seed, name or index)"}};
  const int world_size = world ? world->size() : 1;
  for (int r = 0; r < world_size; ++r) {
    FileEntry e{
        rank_file_name(r), static_cast<int64_t>(all[3 * r]),
        (static_cast<uint64_t>(all[3 * r + 1]) << 32) | static_cast<uint64_t>(all[3 * r + 2])};
    res.bytes += e.bytes;
    m.files.push_back(e);
  }
  err = rank != 0 ? "" : attempt([&] {
    const FileDigest cfg = write_file_synced((tmp / kConfigFile).string(), req.config_yaml);
    m.files.insert(m.files.begin(), FileEntry{kConfigFile, cfg.bytes, cfg.xxh3});
    write_file_synced((tmp / kManifestFile).string(), manifest_json(m));
    sync_dir(tmp.string());
    std::error_code ec;
    const fs::path old = fs::path(root) / (".del-" + name);
    const bool replace = fs::exists(final_dir, ec);
    if (replace) rename_checked(final_dir, old);
    rename_checked(tmp, final_dir);
    sync_dir(root);
    if (replace) remove_quietly(old);
    prune_checkpoints(root, req.keep, final_dir.string());
  });
  Agreement committed = agree(world, err);
  if (committed.failed && rank == 0) remove_quietly(tmp);
  throw_if_failed(committed, what);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace core::checkpoint
