// HF export (streamed tensor by tensor), the HF directory reader, config.json both ways.
#include "core/checkpoint/hf.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "core/checkpoint/files.hpp"
#include "core/error.hpp"

namespace core::checkpoint {
namespace fs = std::filesystem;
namespace {

constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kFused = "gate_up_proj.weight";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// HF files list tensors by layer: embedding, layers in numeric order, final norm, head.
std::tuple<int, std::string> order_key(const std::string& name) {
  const std::string layers = "model.layers.";
  if (name.rfind(layers, 0) == 0) return {std::atoi(name.c_str() + layers.size()), name};
  if (name == "model.embed_tokens.weight") return {-1, name};
  if (name == "lm_head.weight") return {INT_MAX, name};
  return {INT_MAX - 1, name};
}

int64_t rows_of(const std::vector<int64_t>& shape) {
  return shape.empty() ? 1 : shape[0];
}
int64_t cols_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

nlohmann::json parse_json_file(const std::string& path, const std::string& what) {
  const std::string text = read_small_file(path, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    FLOT_THROW(DataError, "{} ({}) is not valid JSON: {}", path, what, e.what());
  }
}

}  // namespace

nlohmann::json hf_config(const Config& c, const std::string& torch_dtype) {
  const ModelConfig& m = c.model;
  const AttentionConfig& a = m.attention;
  nlohmann::json j;
  j["architectures"] = {"DeepseekV3ForCausalLM"};
  j["model_type"] = "deepseek_v3";
  j["torch_dtype"] = torch_dtype;
  j["vocab_size"] = m.vocab_size;
  j["hidden_size"] = m.hidden_size;
  j["intermediate_size"] = m.dense_intermediate_size;
  j["moe_intermediate_size"] = m.moe.expert_intermediate_size;
  j["num_hidden_layers"] = m.num_layers;
  j["num_attention_heads"] = a.num_heads;
  j["num_key_value_heads"] = a.num_heads;
  j["n_shared_experts"] = m.moe.num_shared_experts;
  j["n_routed_experts"] = m.moe.num_experts;
  j["num_experts_per_tok"] = m.moe.experts_per_token;
  j["n_group"] = m.moe.num_groups;
  j["topk_group"] = m.moe.groups_per_token;
  j["routed_scaling_factor"] = m.moe.route_scale;
  j["first_k_dense_replace"] = m.first_dense_layers;
  j["moe_layer_freq"] = 1;
  j["q_lora_rank"] = a.q_lora_rank > 0 ? nlohmann::json(a.q_lora_rank) : nlohmann::json(nullptr);
  j["kv_lora_rank"] = a.kv_lora_rank;
  j["qk_nope_head_dim"] = a.qk_nope_head_dim;
  j["qk_rope_head_dim"] = a.qk_rope_head_dim;
  j["v_head_dim"] = a.v_head_dim;
  j["rope_theta"] = a.rope_theta;
  j["rope_scaling"] = nullptr;
  j["rms_norm_eps"] = m.rms_norm_eps;
  j["num_nextn_predict_layers"] = m.mtp.depth;
  j["norm_topk_prob"] = true;
  j["scoring_func"] = "sigmoid";
  j["topk_method"] = "noaux_tc";
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = false;
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["max_position_embeddings"] = c.train.seq_len;
  j["initializer_range"] = m.init_std;
  j["use_cache"] = true;
  return j;
}

Config config_from_hf(const nlohmann::json& j, Config c, const std::string& path,
                      bool take_seq_len) {
  auto fail = [&](const std::string& key, const std::string& why) {
    FLOT_THROW(DataError, "{}: {} {}", path, key, why);
  };
  auto num = [&](const char* key, auto& out, bool required) {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) fail(key, "is missing; a DeepSeek-V3 config.json has it");
      return;
    }
    if (!j[key].is_number()) fail(key, "is not a number");
    out = j[key].get<std::decay_t<decltype(out)>>();
  };
  auto must_be = [&](const char* key, const nlohmann::json& want, const std::string& why) {
    if (j.contains(key) && !j[key].is_null() && j[key] != want)
      fail(key, fmt::format("= {}: only {} is supported ({})", j[key].dump(), want.dump(), why));
  };
  if (!j.is_object()) fail("the file", "is not a JSON object");
  ModelConfig& m = c.model;
  AttentionConfig& a = m.attention;
  num("vocab_size", m.vocab_size, true);
  num("hidden_size", m.hidden_size, true);
  num("intermediate_size", m.dense_intermediate_size, true);
  num("moe_intermediate_size", m.moe.expert_intermediate_size, true);
  num("num_hidden_layers", m.num_layers, true);
  num("num_attention_heads", a.num_heads, true);
  num("n_routed_experts", m.moe.num_experts, true);
  num("num_experts_per_tok", m.moe.experts_per_token, true);
  m.moe.num_shared_experts = 0;
  num("n_shared_experts", m.moe.num_shared_experts, false);
  m.moe.num_groups = m.moe.groups_per_token = 1;
  num("n_group", m.moe.num_groups, false);
  num("topk_group", m.moe.groups_per_token, false);
  m.moe.route_scale = 1.0;
  num("routed_scaling_factor", m.moe.route_scale, false);
  m.first_dense_layers = 0;
  num("first_k_dense_replace", m.first_dense_layers, false);
  a.q_lora_rank = 0;  // null: a plain query projection
  num("q_lora_rank", a.q_lora_rank, false);
  num("kv_lora_rank", a.kv_lora_rank, true);
  num("qk_nope_head_dim", a.qk_nope_head_dim, true);
  num("qk_rope_head_dim", a.qk_rope_head_dim, true);
  num("v_head_dim", a.v_head_dim, true);
  num("rope_theta", a.rope_theta, false);
  num("rms_norm_eps", m.rms_norm_eps, false);
  num("initializer_range", m.init_std, false);
  m.mtp.depth = 0;
  num("num_nextn_predict_layers", m.mtp.depth, false);
  if (take_seq_len) num("max_position_embeddings", c.train.seq_len, false);
  if (j.contains("num_key_value_heads") && j["num_key_value_heads"] != j["num_attention_heads"])
    fail("num_key_value_heads", "differs from num_attention_heads; MLA has one key/value per head");
  must_be("scoring_func", "sigmoid", "the DeepSeek-V3 gate");
  must_be("topk_method", "noaux_tc", "aux-loss-free top-k with the correction bias");
  must_be("norm_topk_prob", true, "gate weights are normalized over the selected experts");
  must_be("hidden_act", "silu", "SwiGLU experts");
  must_be("tie_word_embeddings", false, "the embedding and the head are separate tensors");
  must_be("moe_layer_freq", 1, "every layer after first_k_dense_replace is MoE");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    fail("rope_scaling", fmt::format("= {}: RoPE scaling (YaRN) is not implemented; only plain "
                                     "RoPE (rope_scaling null)",
                                     j["rope_scaling"].dump()));
  return c;
}

std::vector<HfPart> hf_parts(const std::string& name, const std::vector<int64_t>& shape) {
  const int64_t rows = rows_of(shape);
  if (ends_with(name, kFused)) {
    const std::string prefix = name.substr(0, name.size() - std::strlen(kFused));
    return {{prefix + "gate_proj.weight", 0, rows / 2},
            {prefix + "up_proj.weight", rows / 2, rows}};
  }
  return {{name, 0, rows}};
}

ExportResult export_hf(CheckpointReader& r, const std::string& out_dir, const std::string& dtype,
                       int64_t shard_bytes) {
  FLOT_CHECK(dtype == "bf16" || dtype == "fp32", "export dtype {}", dtype);
  const DType weights = dtype == "bf16" ? DType::bf16 : DType::f32;
  struct Out {
    std::string hf, kind, src;
    int64_t row_begin, row_end;
    std::vector<int64_t> shape;
    DType dtype;
    int64_t bytes() const {
      int64_t n = static_cast<int64_t>(dtype_size(dtype));
      for (int64_t d : shape) n *= d;
      return n;
    }
  };
  std::vector<Out> outs;
  auto add = [&](const std::string& hf, const std::string& kind, const std::string& src, int64_t rb,
                 int64_t re, DType dt) {
    std::vector<int64_t> shape = r.shape(src);
    if (!shape.empty()) shape[0] = re - rb;
    outs.push_back({hf, kind, src, rb, re, shape, dt});
  };
  for (const auto& name : r.names(kParam))
    for (const HfPart& p : hf_parts(name, r.shape(name)))
      add(p.name, kParam, name, p.row_begin, p.row_end, weights);
  for (const auto& name : r.names(kBuffer))
    add(name, kBuffer, name, 0, rows_of(r.shape(name)), DType::f32);
  const ModelConfig& m = r.config().model;
  for (int k = 1; k <= m.mtp.depth; ++k) {
    const std::string layer = "model.layers." + std::to_string(m.num_layers + k - 1) + ".";
    for (auto [hf, src] : {std::pair{"embed_tokens.weight", "model.embed_tokens.weight"},
                           std::pair{"shared_head.head.weight", "lm_head.weight"}})
      add(layer + hf, kParam, src, 0, rows_of(r.shape(src)), weights);
  }
  std::sort(outs.begin(), outs.end(),
            [](const Out& a, const Out& b) { return order_key(a.hf) < order_key(b.hf); });

  // Shards of whole tensors, each at most shard_bytes unless one tensor is larger.
  std::vector<std::vector<const Out*>> shards(1);
  int64_t in_shard = 0;
  for (const Out& o : outs) {
    if (!shards.back().empty() && in_shard + o.bytes() > shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&o);
    in_shard += o.bytes();
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw_io("cannot create directory", out_dir, ec.value());
  ExportResult res;
  nlohmann::json weight_map = nlohmann::json::object();
  std::vector<std::byte> buf;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file =
        fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    std::vector<TensorInfo> infos;
    for (const Out* o : shards[s]) infos.push_back({o->hf, st_dtype_of(o->dtype), o->shape, 0, 0});
    SafetensorsWriter w(out_dir + "/" + file, infos, {{"format", "pt"}});
    for (const Out* o : shards[s]) {
      const int64_t cols = cols_of(r.shape(o->src));
      buf.resize(static_cast<size_t>(o->bytes()));
      r.read(o->kind, o->src, o->row_begin * cols, o->row_end * cols, o->dtype, buf.data());
      w.write(buf.data(), buf.size());
      weight_map[o->hf] = file;
      res.bytes += o->bytes();
      ++res.tensors;
    }
    w.finish();
    ++res.files;
  }
  nlohmann::json index;
  index["metadata"] = {{"total_size", res.bytes}};
  index["weight_map"] = weight_map;
  write_file_synced(out_dir + "/" + kIndexFile, index.dump(2) + "\n");
  write_file_synced(out_dir + "/config.json",
                    hf_config(r.config(), dtype == "bf16" ? "bfloat16" : "float32").dump(2) + "\n");
  sync_dir(out_dir);
  return res;
}

HfReader::HfReader(const std::string& dir) : dir_(dir) {
  config_ = parse_json_file(dir + "/config.json", "HF model config");
  const std::string index = dir + "/" + kIndexFile;
  std::error_code ec;
  if (fs::exists(index, ec)) {
    const nlohmann::json j = parse_json_file(index, "HF weight index");
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      FLOT_THROW(DataError, "{} has no weight_map object", index);
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string())
        FLOT_THROW(DataError, "{}: weight_map.{} is not a file name", index, name);
      weight_map_[name] = file.get<std::string>();
    }
  } else if (fs::exists(dir + "/" + kSingleFile, ec)) {
    const SafetensorsFile& f =
        *files_
             .emplace(kSingleFile,
                      std::make_unique<SafetensorsFile>(dir + "/" + kSingleFile, "HF weights"))
             .first->second;
    for (const auto& t : f.tensors()) weight_map_[t.name] = kSingleFile;
  } else {
    FLOT_THROW(DataError, "{} holds neither {} nor {}: not an HF model directory", dir, kIndexFile,
               kSingleFile);
  }
}

HfReader::~HfReader() = default;

const SafetensorsFile& HfReader::file_of(const std::string& hf_name) {
  auto it = weight_map_.find(hf_name);
  if (it == weight_map_.end())
    FLOT_THROW(DataError,
               "HF model {} has no tensor {}; its config.json and weights describe "
               "another model",
               dir_, hf_name);
  auto f = files_.find(it->second);
  if (f == files_.end())
    f = files_
            .emplace(it->second,
                     std::make_unique<SafetensorsFile>(dir_ + "/" + it->second, "HF weights"))
            .first;
  return *f->second;
}

void HfReader::read(const std::string& name, const std::vector<int64_t>& shape, DType dtype,
                    void* dst) {
  const int64_t cols = cols_of(shape);
  for (const HfPart& p : hf_parts(name, shape)) {
    const SafetensorsFile& f = file_of(p.name);
    const TensorInfo* t = f.find(p.name);
    if (!t) FLOT_THROW(DataError, "{} has no tensor {} (its index says it does)", f.path(), p.name);
    std::vector<int64_t> want = shape;
    if (!want.empty()) want[0] = p.row_end - p.row_begin;
    if (t->shape != want)
      FLOT_THROW(DataError,
                 "{}: {} has shape [{}], the model needs [{}] (config.json and weights "
                 "disagree)",
                 f.path(), p.name, fmt::join(t->shape, ", "), fmt::join(want, ", "));
    convert_elements(f.data(*t), t->dtype, t->numel(), dtype,
                     static_cast<std::byte*>(dst) + p.row_begin * cols * dtype_size(dtype),
                     f.path() + ": " + p.name);
  }
}

void load_hf(HfReader& hf, ParamStore& ps) {
  auto* base = static_cast<std::byte*>(ps.flat_params().data);
  for (const NamedPiece& p : all_tensors(ps))
    hf.read(p.name, p.shape, ps.dtype(), base + p.flat * dtype_size(ps.dtype()));
  for (int b = 0; b < ps.num_buffers(); ++b) {
    const Tensor t = ps.buffer(b);
    hf.read(ps.buffer_name(b), std::vector<int64_t>(t.shape.begin(), t.shape.begin() + t.ndim),
            t.dtype, t.data);
  }
}

}  // namespace core::checkpoint
