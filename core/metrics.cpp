// metrics.jsonl / expert_load.csv / TensorBoard writers and the console progress line.
#include "core/metrics.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <type_traits>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/insight/tensorboard.hpp"

namespace core {

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

MetricsWriter::MetricsWriter(const std::string& run_dir, bool enabled, int num_experts,
                             bool tensorboard)
    : enabled_(enabled), dir_(run_dir), experts_(num_experts) {
  if (!enabled_) return;
  std::filesystem::create_directories(run_dir);
  // Fail now, not at the first log line, when the files cannot be written (nothing is truncated).
  for (const char* f : {"/metrics.jsonl", "/expert_load.csv"}) {
    if (num_experts == 0 && std::string(f) == "/expert_load.csv") continue;
    std::ofstream probe(run_dir + f, std::ios::app);
    if (!probe) FLOT_THROW(DataError, "cannot write {}{}", run_dir, f);
  }
  if (tensorboard) tb_ = std::make_unique<insight::EventWriter>(run_dir + "/tb");
}

namespace {

// Keeps the lines of a metrics file whose step is at most `step` (the rows a resumed run keeps).
void keep_rows_up_to(const std::string& path, int64_t step, bool csv) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  bool first = true;
  while (std::getline(in, line)) {
    int64_t s = -1;
    if (csv && first) {
      kept += line + "\n";  // the header
    } else if (csv) {
      s = std::atoll(line.c_str());
    } else {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step")) s = j["step"].get<int64_t>();
    }
    if (!(csv && first) && s >= 0 && s <= step) kept += line + "\n";
    first = false;
  }
  in.close();
  std::ofstream out(path, std::ios::out | std::ios::trunc);
  out << kept;
}

}  // namespace

void MetricsWriter::open_files() {
  if (opened_) return;
  opened_ = true;
  const std::string jsonl = dir_ + "/metrics.jsonl", loads = dir_ + "/expert_load.csv";
  const bool resume = resume_step_ >= 0;
  if (resume) {
    keep_rows_up_to(jsonl, resume_step_, false);
    keep_rows_up_to(loads, resume_step_, true);
  }
  const auto mode = std::ios::out | (resume ? std::ios::app : std::ios::trunc);
  jsonl_.open(jsonl, mode);
  if (!jsonl_) FLOT_THROW(DataError, "cannot write {}", jsonl);
  if (experts_ > 0) {
    const bool header = !resume || std::filesystem::file_size(loads) == 0;
    loads_.open(loads, mode);
    if (!loads_) FLOT_THROW(DataError, "cannot write {}", loads);
    if (header) {
      loads_ << "step,layer";
      for (int e = 0; e < experts_; ++e) loads_ << ",e" << e;
      loads_ << "\n";
    }
  }
}

MetricsWriter::~MetricsWriter() = default;

namespace {

// Adds one field to the JSON line and, when it has a group, to the TensorBoard summary.
struct FieldSink {
  nlohmann::json& json;
  insight::Summary& summary;

  template <class T>
  void operator()(const char* name, const char* group, const std::optional<T>& v) {
    if (v) (*this)(name, group, *v);
  }
  template <class T, class = std::enable_if_t<std::is_arithmetic_v<T>>>
  void operator()(const char* name, const char* group, T v) {
    json[name] = v;
    if (*group) summary.scalar(fmt::format("{}/{}", group, name), static_cast<double>(v));
  }
};

}  // namespace

void MetricsWriter::write(const StepMetrics& m) {
  if (!enabled_) return;
  open_files();
  nlohmann::json j;
  insight::Summary summary;
  visit_logged_fields(m, FieldSink{j, summary});
  jsonl_ << j.dump() << "\n";
  jsonl_.flush();
  if (tb_) tb_->write(m.step, summary);
}

void MetricsWriter::write_loads(int64_t step, const std::vector<std::vector<int64_t>>& loads) {
  if (!enabled_) return;
  open_files();
  if (!loads_.is_open()) return;
  insight::Summary summary;
  for (size_t l = 0; l < loads.size(); ++l) {
    loads_ << step << "," << l;
    double total = 0;
    for (int64_t v : loads[l]) {
      loads_ << "," << v;
      total += static_cast<double>(v);
    }
    loads_ << "\n";
    // Relative loads (1 = perfectly balanced), so layers and batch sizes compare directly.
    if (total <= 0) continue;
    const double mean = total / static_cast<double>(loads[l].size());
    std::vector<double> rel;
    for (int64_t v : loads[l]) rel.push_back(static_cast<double>(v) / mean);
    summary.histogram(fmt::format("expert_load/layer_{}", l), rel);
  }
  loads_.flush();
  if (tb_ && !summary.empty()) tb_->write(step, summary);
}

ConsoleLog::ConsoleLog(bool enabled, bool in_place)
    : enabled_(enabled), tty_(enabled && in_place && isatty(STDOUT_FILENO)) {}

namespace {
std::string duration(double s) {
  if (s < 0 || s > 1e7) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}
}  // namespace

void ConsoleLog::step(const StepMetrics& m, double elapsed_s) {
  if (!enabled_) return;
  double eta = m.step > 0 ? elapsed_s / m.step * (m.total_steps - m.step) : -1;
  // "loss" here is the main next-token loss, comparable with ln V and the entropy floor; the
  // objective (with MTP and balance terms) is metrics.jsonl's "loss".
  std::string line = fmt::format("step {:>{}}/{} | loss {:.4f}", m.step,
                                 std::to_string(m.total_steps).size(), m.total_steps, m.lm_loss);
  if (m.mtp_loss > 0) line += fmt::format(" | mtp {:.4f}", m.mtp_loss);
  line += fmt::format(" | lr {:.2e} | {:.0f} tok/s | ETA {}", m.lr, m.tokens_per_s, duration(eta));
  if (m.max_vio > 0) line += fmt::format(" | maxvio {:.3f}", m.max_vio);
  if (m.eval_loss) line += fmt::format(" | eval {:.4f}", *m.eval_loss);
  if (m.skipped) line += " | SKIPPED (non-finite loss or gradient)";
  if (tty_) {
    std::fputs(("\r\033[K" + line).c_str(), stdout);
    open_line_ = true;
    if (m.eval_loss) finish_line();  // keep evaluation lines on screen
  } else {
    std::puts(line.c_str());
  }
  std::fflush(stdout);
}

void ConsoleLog::finish_line() {
  if (open_line_) std::fputc('\n', stdout);
  open_line_ = false;
  std::fflush(stdout);
}

void ConsoleLog::print(const std::string& line) {
  if (!enabled_) return;
  finish_line();
  std::puts(line.c_str());
  std::fflush(stdout);
}

}  // namespace core
