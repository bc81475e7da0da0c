// Config loading: YAML files and `--set a.b=v` overrides into core::Config, strict about keys and
// types, plus to_yaml() and ==. The value and cross-field rules live in config_validate.cpp.
//
// One list of keys (visit_fields) drives parsing, printing and comparison, so a key added to the
// structs is added in exactly one place here and cannot be parsed but not printed, or vice versa.
#include "core/config.hpp"

#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>

#include "core/error.hpp"

namespace core {
namespace {

// Calls f(path, member-of-c...) for every key, in the order of docs/configuration.md. Passing
// several configs hands f the same member of each (what == needs). Groups must stay contiguous:
// to_yaml() opens a group when the path prefix changes.
template <class F, class... C>
void visit_fields(F&& f, C&... c) {
  f("run.name", c.run.name...);
  f("run.seed", c.run.seed...);
  f("run.tensorboard", c.run.tensorboard...);
  f("model.vocab_size", c.model.vocab_size...);
  f("model.hidden_size", c.model.hidden_size...);
  f("model.num_layers", c.model.num_layers...);
  f("model.first_dense_layers", c.model.first_dense_layers...);
  f("model.dense_intermediate_size", c.model.dense_intermediate_size...);
  f("model.rms_norm_eps", c.model.rms_norm_eps...);
  f("model.init_std", c.model.init_std...);
  f("model.attention.num_heads", c.model.attention.num_heads...);
  f("model.attention.q_lora_rank", c.model.attention.q_lora_rank...);
  f("model.attention.kv_lora_rank", c.model.attention.kv_lora_rank...);
  f("model.attention.qk_nope_head_dim", c.model.attention.qk_nope_head_dim...);
  f("model.attention.qk_rope_head_dim", c.model.attention.qk_rope_head_dim...);
  f("model.attention.v_head_dim", c.model.attention.v_head_dim...);
  f("model.attention.rope_theta", c.model.attention.rope_theta...);
  f("model.moe.num_experts", c.model.moe.num_experts...);
  f("model.moe.experts_per_token", c.model.moe.experts_per_token...);
  f("model.moe.num_shared_experts", c.model.moe.num_shared_experts...);
  f("model.moe.expert_intermediate_size", c.model.moe.expert_intermediate_size...);
  f("model.moe.num_groups", c.model.moe.num_groups...);
  f("model.moe.groups_per_token", c.model.moe.groups_per_token...);
  f("model.moe.route_scale", c.model.moe.route_scale...);
  f("model.moe.balancer", c.model.moe.balancer...);
  f("model.moe.bias_update_rate", c.model.moe.bias_update_rate...);
  f("model.moe.aux_loss_weight", c.model.moe.aux_loss_weight...);
  f("model.moe.sequence_aux_loss_weight", c.model.moe.sequence_aux_loss_weight...);
  f("model.mtp.depth", c.model.mtp.depth...);
  f("model.mtp.loss_weight", c.model.mtp.loss_weight...);
  f("train.steps", c.train.steps...);
  f("train.seq_len", c.train.seq_len...);
  f("train.micro_batch_size", c.train.micro_batch_size...);
  f("train.global_batch_size", c.train.global_batch_size...);
  f("train.precision", c.train.precision...);
  f("train.eval_every", c.train.eval_every...);
  f("train.eval_batches", c.train.eval_batches...);
  f("train.log_every", c.train.log_every...);
  f("train.threads", c.train.threads...);
  f("train.resume", c.train.resume...);
  f("train.max_skipped_steps", c.train.max_skipped_steps...);
  f("train.expect.eval_loss_below", c.train.expect.eval_loss_below...);
  f("train.expect.gap_closed_above", c.train.expect.gap_closed_above...);
  f("optim.lr", c.optim.lr...);
  f("optim.min_lr", c.optim.min_lr...);
  f("optim.warmup_steps", c.optim.warmup_steps...);
  f("optim.schedule", c.optim.schedule...);
  f("optim.decay_fraction", c.optim.decay_fraction...);
  f("optim.weight_decay", c.optim.weight_decay...);
  f("optim.beta1", c.optim.beta1...);
  f("optim.beta2", c.optim.beta2...);
  f("optim.eps", c.optim.eps...);
  f("optim.grad_clip", c.optim.grad_clip...);
  f("optim.moment_dtype", c.optim.moment_dtype...);
  f("parallel.pp", c.parallel.pp...);
  f("parallel.ep", c.parallel.ep...);
  f("parallel.schedule", c.parallel.schedule...);
  f("parallel.chunks", c.parallel.chunks...);
  f("parallel.zero1", c.parallel.zero1...);
  f("parallel.overlap", c.parallel.overlap...);
  f("parallel.pipeline_layers", c.parallel.pipeline_layers...);
  f("parallel.bucket_mb", c.parallel.bucket_mb...);
  f("parallel.link.bandwidth_gbps", c.parallel.link.bandwidth_gbps...);
  f("parallel.link.latency_us", c.parallel.link.latency_us...);
  f("parallel.link.traffic", c.parallel.link.traffic...);
  f("data.kind", c.data.kind...);
  f("data.path", c.data.path...);
  f("data.val_fraction", c.data.val_fraction...);
  f("data.synthetic.branching", c.data.synthetic.branching...);
  f("data.synthetic.period", c.data.synthetic.period...);
  f("checkpoint.dir", c.checkpoint.dir...);
  f("checkpoint.every", c.checkpoint.every...);
  f("checkpoint.keep", c.checkpoint.keep...);
  f("runtime.device", c.runtime.device...);
  f("runtime.comm_timeout_s", c.runtime.comm_timeout_s...);
  f("runtime.comm_thread_priority", c.runtime.comm_thread_priority...);
  f("runtime.stop_grace_s", c.runtime.stop_grace_s...);
  f("runtime.memory_limit_gb", c.runtime.memory_limit_gb...);
}

const std::vector<std::string>& leaf_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    Config c;
    visit_fields([&](const char* path, auto&) { k.emplace_back(path); }, c);
    return k;
  }();
  return keys;
}

// Every proper prefix of a key ("model", "model.moe", ...): the paths that hold maps.
const std::set<std::string>& group_keys() {
  static const std::set<std::string> groups = [] {
    std::set<std::string> g;
    for (const auto& k : leaf_keys())
      for (size_t dot = k.find('.'); dot != std::string::npos; dot = k.find('.', dot + 1))
        g.insert(k.substr(0, dot));
    return g;
  }();
  return groups;
}

bool is_leaf(const std::string& path) {
  const auto& k = leaf_keys();
  return std::find(k.begin(), k.end(), path) != k.end();
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string last_segment(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// A typo in the name (num_expert) or the right name in the wrong group (train.lr -> optim.lr).
std::string suggestion(const std::string& unknown) {
  std::vector<std::string> candidates(leaf_keys());
  candidates.insert(candidates.end(), group_keys().begin(), group_keys().end());
  std::string leaf = last_segment(unknown), best;
  size_t best_score = std::numeric_limits<size_t>::max();
  for (const auto& cand : candidates) {
    size_t score =
        std::min(edit_distance(unknown, cand), edit_distance(leaf, last_segment(cand)) + 1);
    if (score < best_score) {
      best_score = score;
      best = cand;
    }
  }
  size_t allowed = std::max<size_t>(2, leaf.size() / 3);
  return best_score <= allowed ? fmt::format(" (did you mean '{}'?)", best) : std::string();
}

// Where a value came from, for messages: a file position, or the --set argument itself.
struct Source {
  std::string name;  // file name, or "--set a.b=v"
  bool is_override = false;

  std::string at(const YAML::Mark& m) const {
    if (is_override || m.is_null()) return name;
    return fmt::format("{}:{}:{}", name, m.line + 1, m.column + 1);
  }
};

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      break;
  }
  if (n.Tag() == "!") return fmt::format("the quoted string '{}'", n.Scalar());
  return fmt::format("'{}'", n.Scalar());
}

[[noreturn]] void type_error(const Source& src, const YAML::Mark& mark, const std::string& path,
                             const char* expected, const YAML::Node& n) {
  FLOT_THROW(ConfigError, "{}: {}: expected {}, got {}", src.at(mark), path, expected, describe(n));
}

// A plain (unquoted) scalar: quoting a number or a bool in YAML makes it a string.
bool plain_scalar(const YAML::Node& n) { return n.IsScalar() && n.Tag() != "!"; }

template <class Int>
void parse_integer(const YAML::Node& n, Int& out, const std::string& path, const Source& src,
                   const YAML::Mark& mark) {
  constexpr bool is_unsigned = std::is_unsigned_v<Int>;
  const char* expected = is_unsigned ? "a non-negative integer" : "an integer";
  if (!plain_scalar(n)) type_error(src, mark, path, expected, n);
  std::string s = n.Scalar();
  if (!s.empty() && s[0] == '+') s.erase(0, 1);
  // Parse wide first so that "too large for this key" is told apart from "not a number".
  using Wide = std::conditional_t<is_unsigned, unsigned long long, long long>;
  Wide v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec == std::errc::invalid_argument || end != s.data() + s.size())
    type_error(src, mark, path, expected, n);
  if (ec == std::errc::result_out_of_range ||
      v < static_cast<Wide>(std::numeric_limits<Int>::min()) ||
      v > static_cast<Wide>(std::numeric_limits<Int>::max()))
    FLOT_THROW(ConfigError, "{}: {}: {} is out of range (at most {})", src.at(mark), path,
               n.Scalar(), std::numeric_limits<Int>::max());
  out = static_cast<Int>(v);
}

void parse_value(const YAML::Node& n, int& out, const std::string& path, const Source& src,
                 const YAML::Mark& mark) {
  parse_integer(n, out, path, src, mark);
}
void parse_value(const YAML::Node& n, int64_t& out, const std::string& path, const Source& src,
                 const YAML::Mark& mark) {
  parse_integer(n, out, path, src, mark);
}
void parse_value(const YAML::Node& n, uint64_t& out, const std::string& path, const Source& src,
                 const YAML::Mark& mark) {
  parse_integer(n, out, path, src, mark);
}

void parse_value(const YAML::Node& n, double& out, const std::string& path, const Source& src,
                 const YAML::Mark& mark) {
  if (!plain_scalar(n)) type_error(src, mark, path, "a number", n);
  std::string s = n.Scalar();
  if (!s.empty() && s[0] == '+') s.erase(0, 1);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v))
    type_error(src, mark, path, "a finite number", n);
  out = v;
}

void parse_value(const YAML::Node& n, bool& out, const std::string& path, const Source& src,
                 const YAML::Mark& mark) {
  std::string s = plain_scalar(n) ? n.Scalar() : std::string();
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  // The YAML 1.1 spellings are accepted because yaml-cpp and most YAML users treat them as bools.
  if (s == "true" || s == "yes" || s == "on")
    out = true;
  else if (s == "false" || s == "no" || s == "off")
    out = false;
  else
    type_error(src, mark, path, "true or false", n);
}

void parse_value(const YAML::Node& n, std::string& out, const std::string& path, const Source& src,
                 const YAML::Mark& mark) {
  if (n.IsNull())
    out.clear();  // `dir:` or `--set checkpoint.dir=` means the empty string
  else if (n.IsScalar())
    out = n.Scalar();
  else
    type_error(src, mark, path, "a string", n);
}

void parse_value(const YAML::Node& n, std::vector<int>& out, const std::string& path,
                 const Source& src, const YAML::Mark& mark) {
  if (n.IsNull()) {
    out.clear();
    return;
  }
  if (!n.IsSequence()) type_error(src, mark, path, "a list of integers such as [2, 2]", n);
  std::vector<int> v;
  for (const auto& item : n) {
    v.emplace_back();
    parse_integer(item, v.back(), path, src, item.Mark());
  }
  out = std::move(v);
}

// Sets one key from its YAML node; the path must be a leaf key.
void set_leaf(Config& c, const std::string& path, const YAML::Node& n, const Source& src,
              const YAML::Mark& mark) {
  visit_fields(
      [&](const char* key, auto& member) {
        if (path == key) parse_value(n, member, path, src, mark);
      },
      c);
}

// Best position to blame for a value: the value itself, or its key when the value is empty.
YAML::Mark value_mark(const YAML::Node& n, const YAML::Mark& key_mark) {
  return n.IsNull() ? key_mark : n.Mark();
}

// Applies node `n` found at `path` ("" = the document root). Groups recurse into their keys.
void apply(Config& c, const std::string& path, const YAML::Node& n, const Source& src,
           const YAML::Mark& key_mark) {
  if (is_leaf(path)) {
    set_leaf(c, path, n, src, value_mark(n, key_mark));
    c.origins[path] = src.at(key_mark);
    return;
  }
  if (n.IsNull()) return;  // a group whose keys are all commented out
  if (!n.IsMap()) {
    if (path.empty())
      FLOT_THROW(ConfigError, "{}: expected a map of keys at the top level, got {}",
                 src.at(n.Mark()), describe(n));
    FLOT_THROW(ConfigError, "{}: {}: expected a map of keys, got {}",
               src.at(value_mark(n, key_mark)), path, describe(n));
  }
  std::map<std::string, YAML::Mark> seen;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const YAML::Node& key = it->first;
    if (!key.IsScalar())
      FLOT_THROW(ConfigError, "{}: keys must be names, got {}", src.at(key.Mark()), describe(key));
    std::string child = path.empty() ? key.Scalar() : path + "." + key.Scalar();
    auto [prev, fresh] = seen.emplace(key.Scalar(), key.Mark());
    if (!fresh)
      FLOT_THROW(ConfigError, "{}: duplicate key '{}' (first set at line {})", src.at(key.Mark()),
                 child, prev->second.line + 1);
    if (!is_leaf(child) && !group_keys().count(child))
      FLOT_THROW(ConfigError, "{}: unknown key '{}'{}", src.at(key.Mark()), child,
                 suggestion(child));
    apply(c, child, it->second, src, key.Mark());
  }
}

YAML::Node load_one_document(const std::string& text, const Source& src) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    FLOT_THROW(ConfigError, "{}: invalid YAML: {}", src.at(e.mark), e.msg);
  }
  if (docs.size() > 1)
    FLOT_THROW(ConfigError, "{}: holds {} YAML documents; a config is one document (remove '---')",
               src.name, docs.size());
  return docs.empty() ? YAML::Node() : docs[0];
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

void apply_override(Config& c, const std::string& text) {
  Source src{"--set " + text, true};
  size_t eq = text.find('=');
  std::string key = trim(text.substr(0, eq));
  if (eq == std::string::npos || key.empty())
    FLOT_THROW(ConfigError, "--set '{}': expected key=value, e.g. --set train.steps=10", text);
  if (!is_leaf(key) && !group_keys().count(key))
    FLOT_THROW(ConfigError, "{}: unknown key '{}'{}", src.name, key, suggestion(key));
  std::string value = text.substr(eq + 1);
  bool string_key = false;
  visit_fields(
      [&](const char* k, auto& m) {
        if (key == k) string_key = std::is_same_v<std::decay_t<decltype(m)>, std::string>;
      },
      c);
  YAML::Node n;
  bool readable = true;
  try {
    n = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    readable = false;
    if (!string_key)
      FLOT_THROW(ConfigError, "{}: cannot read the value '{}' as YAML: {}", src.name, value, e.msg);
  }
  // A name or path with YAML punctuation ("a: b", "[x]", "@x") is meant literally for a string key.
  if (string_key && (!readable || (!n.IsNull() && !n.IsScalar()))) n = YAML::Node(value);
  apply(c, key, n, src, YAML::Mark::null_mark());
}

// Words and paths that every YAML reader takes as the same string when written unquoted.
bool plain_safe(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '/')) return false;
  for (unsigned char ch : s)
    if (!std::isalnum(ch) && ch != '_' && ch != '-' && ch != '.' && ch != '/') return false;
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  for (const char* word :
       {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf"})
    if (lower == word) return false;
  return true;
}

template <class T>
std::string yaml_value(const T& v) {
  if constexpr (std::is_same_v<T, std::vector<int>>) {
    return fmt::format("[{}]", fmt::join(v, ", "));
  } else if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (plain_safe(v)) return v;
    // Double-quoted, so that names like "yes", "1e3" or "a: b" stay strings.
    std::string out = "\"";
    for (unsigned char ch : v) {
      if (ch == '"' || ch == '\\')
        out += std::string{'\\', static_cast<char>(ch)};
      else if (ch < 0x20 || ch == 0x7f)
        out += fmt::format("\\x{:02x}", ch);
      else
        out += static_cast<char>(ch);
    }
    return out + "\"";
  } else {
    std::string out = fmt::format("{}", v);  // shortest form that reads back to the same value
    // A trailing ".0" keeps doubles doubles for other YAML readers (rope_theta: 10000.0).
    if (std::is_floating_point_v<T> && out.find_first_of(".en") == std::string::npos) out += ".0";
    return out;
  }
}

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source, Config base) {
  Source src{source.empty() ? std::string("<config>") : source, false};
  YAML::Node root = load_one_document(yaml_text, src);
  apply(base, "", root, src, YAML::Mark());
  return base;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Config c;
  if (!path.empty()) {
    std::ifstream in(path, std::ios::binary);
    if (!in) FLOT_THROW(ConfigError, "cannot open config file '{}'", path);
    std::stringstream text;
    text << in.rdbuf();
    if (in.bad()) FLOT_THROW(ConfigError, "cannot read config file '{}'", path);
    c = parse_config(text.str(), path, std::move(c));
  }
  for (const auto& o : overrides) apply_override(c, o);
  validate(c);
  return c;
}

std::string to_yaml(const Config& c) {
  std::string out;
  std::vector<std::string> open;  // the groups of the previous key
  visit_fields(
      [&](const char* path, const auto& value) {
        std::vector<std::string> segs;
        std::stringstream ss(path);
        for (std::string s; std::getline(ss, s, '.');) segs.push_back(s);
        size_t depth = segs.size() - 1, common = 0;
        while (common < open.size() && common < depth && open[common] == segs[common]) ++common;
        open.resize(common);
        for (size_t i = common; i < depth; ++i) {
          out += fmt::format("{:{}}{}:\n", "", 2 * i, segs[i]);
          open.push_back(segs[i]);
        }
        out += fmt::format("{:{}}{}: {}\n", "", 2 * depth, segs.back(), yaml_value(value));
      },
      c);
  return out;
}

std::vector<std::string> config_keys() { return leaf_keys(); }

bool operator==(const Config& a, const Config& b) {
  bool equal = true;
  visit_fields([&](const char*, const auto& x, const auto& y) { equal = equal && x == y; }, a, b);
  return equal;
}

std::vector<KeyDiff> diff_configs(const Config& a, const Config& b) {
  std::vector<KeyDiff> out;
  visit_fields(
      [&](const char* key, const auto& x, const auto& y) {
        if (!(x == y)) out.push_back({key, yaml_value(x), yaml_value(y)});
      },
      a, b);
  return out;
}

}  // namespace core
