// What one rank holds and writes, in the checkpoint's terms: named pieces of global tensors.
//
// A rank's ParamStore is flat: parameters by reduction group, padded, with stacked experts
// [local experts, ...]. A checkpoint knows only global names: "model.layers.3.self_attn.o_proj.
// weight", one name per expert slice ("...experts.17.down_proj.weight"). named_pieces() turns a
// flat element range (a ZeRO-1 shard, which may cut through a tensor) into pieces of named
// tensors: (name, element range within that tensor, where it lives in the flat view). Padding
// belongs to no tensor and is never written. Any layout's ranges map to the same names, which
// is what lets a checkpoint move between layouts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/params.hpp"

namespace optim {
class ShardedAdamW;
}
namespace parallel {
class Communicator;
}

namespace core::checkpoint {

// Tensor kinds of a checkpoint, the first part of every stored tensor key.
inline constexpr const char* kParam = "param";
inline constexpr const char* kExpAvg = "exp_avg";       // AdamW first moment
inline constexpr const char* kExpAvgSq = "exp_avg_sq";  // AdamW second moment
inline constexpr const char* kBuffer = "buffer";        // non-trained state (balancing biases)

struct NamedPiece {
  std::string name;            // global name (one expert slice for stacked tensors)
  std::vector<int64_t> shape;  // the named tensor's full shape
  int64_t begin = 0, end = 0;  // element range within the named tensor
  int64_t flat = 0;            // flat offset of element `begin` in the rank's parameter view
  bool whole() const;          // the piece is the whole named tensor
  int64_t numel() const { return end - begin; }
};

// The pieces of named tensors inside the flat range, in flat order.
std::vector<NamedPiece> named_pieces(const ParamStore& ps, ParamStore::Range flat);
// Every named tensor of the store, whole (each parameter, each expert slice separately).
std::vector<NamedPiece> all_tensors(const ParamStore& ps);

// The stored key of a piece: "<kind>/<name>" for a whole tensor, "<kind>/<name>/<begin>:<end>"
// (a flat run of elements) for part of one.
std::string piece_key(const std::string& kind, const NamedPiece& p);
struct ParsedKey {
  std::string kind, name;
  int64_t begin = 0, end = -1;  // end -1: the whole tensor
};
// Throws DataError for a key of another form.
ParsedKey parse_key(const std::string& key, const std::string& file);

// One rank's view of the training state for saving and loading.
struct RankShare {
  ParamStore* params = nullptr;
  optim::ShardedAdamW* optimizer = nullptr;  // null: parameters and buffers only
  std::vector<ParamStore::Range> writes;     // flat ranges whose values (and moments) it writes
  bool write_buffers = false;                // it writes the balancing biases
  parallel::Communicator* world = nullptr;   // null: a single process
};

}  // namespace core::checkpoint
