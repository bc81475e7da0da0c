// Run insight through the binary: the TensorBoard events and report.html of a short real run,
// `flotilla report` on finished and truncated runs, and the exit codes of train.expect.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/report_svgs.hpp"
#include "common/tfevents_reader.hpp"
#include "run_binary.hpp"

using namespace testing;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// A short, fast run of the tiny model: 4 steps of 8 sequences of 16 tokens, one thread (steady
// speed on a shared machine).
const std::string kShort =
    "train --set train.steps=4 --set train.seq_len=16 --set train.global_batch_size=8 "
    "--set train.eval_every=2 --set train.eval_batches=1 --set optim.warmup_steps=1 "
    "--set data.synthetic.period=8 --set checkpoint.every=0 --set train.threads=1 ";

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(read_text(path));
  for (std::string line; std::getline(lines, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  if (fs::exists(dir))
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().string());
  return out;
}

}  // namespace

TEST_CASE("a run writes TensorBoard events and a well-formed report.html from its metrics",
          "[insight]") {
  std::string dir = temp_dir("insight-run");
  auto r = run_flotilla(kShort + "--run-dir " + dir);
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Contains("report: " + dir + "/report.html"));
  auto metrics = read_jsonl(dir + "/metrics.jsonl");
  REQUIRE(metrics.size() == 4);
  const auto& last = metrics.back();

  // The report: every SVG parses, one plot per metric, one heatmap per MoE layer (3 blocks + MTP).
  const std::string html = read_text(dir + "/report.html");
  ReportSvgs svgs = parse_report_svgs(html);
  for (const char* metric : {"lm_loss", "lr", "grad_norm", "tokens_per_s", "max_vio"}) {
    INFO(metric);
    CHECK(svgs.with("data-metric", metric).size() == 1);
  }
  auto maps = svgs.with("class", "heatmap");
  CHECK(maps.size() == 4);
  for (const auto* m : maps) CHECK(m->attr("data-experts") == "8");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.5g", last["lm_loss"].get<double>());
  const std::string loss_text = svg_text(*svgs.with("data-metric", "lm_loss")[0]);
  CHECK_THAT(loss_text, Contains(std::string("train lm loss · last ") + buf));
  std::snprintf(buf, sizeof buf, "%.5g", last["eval_loss"].get<double>());
  CHECK_THAT(loss_text, Contains(std::string("eval loss · last ") + buf));
  std::snprintf(buf, sizeof buf, "%.5g", last["entropy_floor"].get<double>());
  CHECK_THAT(loss_text, Contains(std::string("entropy floor ") + buf));
  std::snprintf(buf, sizeof buf, "%.5g", last["lr"].get<double>());
  CHECK_THAT(svg_text(*svgs.with("data-metric", "lr")[0]), Contains(std::string("last ") + buf));

  // The events: the version record, then per logged step the scalars with the jsonl's values
  // and one expert-load histogram per MoE layer.
  auto tb = files_in(dir + "/tb");
  REQUIRE(tb.size() == 1);
  auto events = read_events(tb[0]);
  REQUIRE(!events.empty());
  CHECK(events[0].file_version == "brain.Event:2");
  int scalar_events = 0, histograms = 0;
  for (const auto& e : events) {
    for (const auto& v : e.values) {
      if (v.has_histo) {
        ++histograms;
        CHECK(v.histo.num == 8);
        CHECK(v.histo.sum == Approx(8.0));
      }
      if (v.tag != "loss/lm_loss") continue;
      ++scalar_events;
      REQUIRE(e.step >= 1);
      REQUIRE(e.step <= 4);
      CHECK(v.simple_value == static_cast<float>(metrics[e.step - 1]["lm_loss"].get<double>()));
    }
  }
  CHECK(scalar_events == 4);
  CHECK(histograms == 4 * 4);

  // `flotilla report` rebuilds the same report elsewhere.
  auto rep = run_flotilla("report " + dir + " --out " + dir + "/again.html");
  INFO(rep.output);
  CHECK(rep.code == 0);
  CHECK_THAT(rep.output, Contains("4 logged steps, 4 MoE layers"));
  CHECK(parse_report_svgs(read_text(dir + "/again.html")).svgs.size() == svgs.svgs.size());

  // A second run in the same directory moves the first one's events and report aside.
  auto again = run_flotilla(kShort + "--set train.steps=2 --run-dir " + dir);
  INFO(again.output);
  CHECK(again.code == 0);
  CHECK(files_in(dir + "/tb").size() == 1);
  auto previous = files_in(dir + "/previous");
  REQUIRE(previous.size() == 1);
  CHECK(fs::exists(previous[0] + "/report.html"));
  CHECK(files_in(previous[0] + "/tb").size() == 1);
}

TEST_CASE("flotilla report: a truncated last line is left out; no metrics.jsonl is exit 2",
          "[insight]") {
  std::string dir = temp_dir("insight-report");
  auto r = run_flotilla("report " + dir);
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("has no metrics.jsonl"));
  auto help = run_flotilla("report --help");
  CHECK(help.code == 0);
  CHECK_THAT(help.output, Contains("--out"));

  // metrics as a killed run leaves them: two whole lines and half of the third
  std::ofstream(dir + "/metrics.jsonl") << "{\"step\":1,\"lm_loss\":5.5,\"lr\":0.001,\"grad_norm\":"
                                           "1.0,\"tokens_per_s\":100,\"max_vio\":0.5}\n"
                                        << "{\"step\":2,\"lm_loss\":5.25,\"lr\":0.002,\"grad_"
                                           "norm\":0.5,\"tokens_per_s\":110,\"max_vio\":0.25}\n"
                                        << "{\"step\":3,\"lm_loss\":5.";
  auto t = run_flotilla("report " + dir);
  INFO(t.output);
  CHECK(t.code == 0);
  CHECK_THAT(t.output, Contains("2 logged steps"));
  CHECK_THAT(t.output, Contains("incomplete last line"));
  ReportSvgs svgs = parse_report_svgs(read_text(dir + "/report.html"));
  CHECK_THAT(svg_text(*svgs.with("data-metric", "lm_loss")[0]), Contains("last 5.25"));
}

TEST_CASE("train.expect: met expectations exit 0, missed ones exit 3 with the figures",
          "[insight]") {
  std::string dir = temp_dir("insight-expect");
  auto met = run_flotilla(kShort + "--set train.expect.eval_loss_below=50 --run-dir " + dir);
  INFO(met.output);
  CHECK(met.code == 0);
  CHECK_THAT(met.output, Contains("expectation met: eval loss"));
  CHECK_THAT(met.output, Contains("< 50 (train.expect.eval_loss_below)"));

  auto missed = run_flotilla(kShort + "--set train.expect.eval_loss_below=0.01 --run-dir " + dir);
  INFO(missed.output);
  CHECK(missed.code == 3);
  CHECK_THAT(missed.output, Contains("expectation missed: eval loss"));
  CHECK_THAT(missed.output, Contains("is not below 0.01 (train.expect.eval_loss_below)"));
  CHECK(fs::exists(dir + "/report.html"));  // the report is written whatever the verdict

  // The gap closed, in percent as on the final line: about 0% after 4 steps, so 99.9% is missed.
  auto gap_missed =
      run_flotilla(kShort + "--set train.expect.gap_closed_above=99.9 --run-dir " + dir);
  INFO(gap_missed.output);
  CHECK(gap_missed.code == 3);
  CHECK_THAT(gap_missed.output, Contains("expectation missed: gap closed"));
  CHECK_THAT(gap_missed.output, Contains("is not above 99.9% (train.expect.gap_closed_above)"));
  // A met gap needs learning: 32 tokens with 2 successors each close about 24% in 12 steps.
  auto gap_met =
      run_flotilla(kShort +
                   "--set train.steps=12 --set train.eval_every=12 --set optim.warmup_steps=2 "
                   "--set model.vocab_size=32 --set data.synthetic.branching=2 "
                   "--set train.expect.gap_closed_above=5 --run-dir " +
                   dir);
  INFO(gap_met.output);
  CHECK(gap_met.code == 0);
  CHECK_THAT(gap_met.output, Contains("expectation met: gap closed"));
}

TEST_CASE("train.expect.gap_closed_above without an entropy floor is a config error", "[insight]") {
  std::string dir = temp_dir("insight-nofloor");
  {
    std::ofstream text(dir + "/text.txt");
    for (int i = 0; i < 400; ++i)
      text << "the quick brown fox jumps over the lazy dog " << i << "\n";
  }
  auto r =
      run_flotilla(kShort + "--set data.kind=text --set data.path=" + dir +
                   "/text.txt --set train.expect.gap_closed_above=50 --run-dir " + dir + "/run");
  INFO(r.output);
  CHECK(r.code == 2);
  CHECK_THAT(r.output, Contains("train.expect.gap_closed_above"));
  CHECK_THAT(r.output, Contains("entropy floor"));
  CHECK_THAT(r.output, !Contains("step 1/"));
  // the same data with an eval-loss expectation trains
  auto ok =
      run_flotilla(kShort + "--set data.kind=text --set data.path=" + dir +
                   "/text.txt --set train.expect.eval_loss_below=100 --run-dir " + dir + "/run");
  INFO(ok.output);
  CHECK(ok.code == 0);
}

TEST_CASE("a run stopped by a signal still writes its report", "[insight]") {
  std::string dir = temp_dir("insight-sigterm");
  auto r = run_flotilla(
      "train --set train.steps=100000 --set train.seq_len=16 "
      "--set train.global_batch_size=8 --set train.eval_every=0 "
      "--set checkpoint.every=0 --set train.threads=1 --run-dir " +
      dir + " & pid=$!; for i in $(seq 100); do [ -s " + dir +
      "/expert_load.csv ] && break; sleep 0.1; done; sleep 0.3; "
      "kill -TERM $pid; wait $pid");
  INFO(r.output);
  CHECK(r.code == 130);
  CHECK_THAT(r.output, Contains("report: " + dir + "/report.html"));
  ReportSvgs svgs = parse_report_svgs(read_text(dir + "/report.html"));
  CHECK(svgs.with("class", "heatmap").size() == 4);
}
