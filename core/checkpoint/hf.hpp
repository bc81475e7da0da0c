// The HF DeepSeek-V3 layout: export of a checkpoint, reading of an HF directory by our names,
// and config.json in both directions.
//
// Names are the public checkpoint's, which ours already are, except that our dense and expert
// MLPs hold W1 and W3 fused as gate_up_proj [2I, D] (one GEMM): HF has gate_proj = rows [0, I)
// and up_proj = rows [I, 2I). MTP module k is layer num_layers + k - 1 in both; the export also
// writes that layer's embed_tokens and shared_head.head, copies of the shared embedding and
// head, as the public checkpoint does (the reader ignores them). The balancing bias
// e_score_correction_bias stays FP32 whatever the export dtype.
//
// An HF directory holds config.json and either model.safetensors or shards listed in
// model.safetensors.index.json. Weights may be F32, BF16 or F16 (FP8 checkpoints with
// weight_scale_inv must be dequantized first).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/checkpoint/reader.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/config.hpp"
#include "core/params.hpp"

namespace core::checkpoint {

// config.json of a model config (torch_dtype "bfloat16" or "float32").
nlohmann::json hf_config(const Config& c, const std::string& torch_dtype);
// `base` with model.* (and train.seq_len from max_position_embeddings when `take_seq_len`) taken
// from an HF config.json. DataError naming the key for what this model cannot represent.
Config config_from_hf(const nlohmann::json& j, Config base, const std::string& path,
                      bool take_seq_len);

// The HF tensors holding one of our named tensors: rows [row_begin, row_end) of it each.
struct HfPart {
  std::string name;
  int64_t row_begin = 0, row_end = 0;
};
std::vector<HfPart> hf_parts(const std::string& name, const std::vector<int64_t>& shape);

struct ExportResult {
  int files = 0;
  int tensors = 0;
  int64_t bytes = 0;  // tensor data, all shards
};
// Writes out_dir/{model-0000i-of-0000n.safetensors, model.safetensors.index.json, config.json}.
// dtype "bf16" or "fp32"; shards hold at most shard_bytes of data (one tensor may exceed it).
ExportResult export_hf(CheckpointReader& r, const std::string& out_dir, const std::string& dtype,
                       int64_t shard_bytes);

class HfReader {
 public:
  // Opens config.json and the weight files (headers checked); DataError for what is missing.
  explicit HfReader(const std::string& dir);
  ~HfReader();
  const nlohmann::json& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  // Our tensor `name` of `shape` (a gate_up_proj assembled from gate_proj and up_proj).
  void read(const std::string& name, const std::vector<int64_t>& shape, DType dtype, void* dst);

 private:
  const SafetensorsFile& file_of(const std::string& hf_name);
  std::string dir_;
  nlohmann::json config_;
  std::map<std::string, std::string> weight_map_;  // HF name -> file name
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
};

// Every parameter and buffer of `ps` from an HF directory, by name.
void load_hf(HfReader& hf, ParamStore& ps);

}  // namespace core::checkpoint
