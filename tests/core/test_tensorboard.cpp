// TensorBoard event files: CRC32C against the standard check values, the hand-written protobuf
// encoding against bytes produced by the reference protobuf library, and files written by
// EventWriter and MetricsWriter read back by the independent reader of tests/common.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "common/scratch_dir.hpp"
#include "common/tfevents_reader.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/insight/crc32c.hpp"
#include "core/insight/tensorboard.hpp"
#include "core/metrics.hpp"

namespace fs = std::filesystem;
using core::insight::crc32c;
using core::insight::mask_crc32c;

namespace {

std::string hex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) out += {d[c >> 4], d[c & 15]};
  return out;
}

// The single event file of a tb/ directory.
std::string event_file(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().string());
  REQUIRE(files.size() == 1);
  CHECK(fs::path(files[0]).filename().string().rfind("events.out.tfevents.", 0) == 0);
  return files[0];
}

}  // namespace

TEST_CASE("crc32c matches the standard check values", "[tensorboard]") {
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  // RFC 3720 (iSCSI) appendix B.4 vectors
  std::string zeros(32, '\0'), ones(32, '\xff'), up(32, '\0');
  for (int i = 0; i < 32; ++i) up[i] = static_cast<char>(i);
  CHECK(crc32c(zeros.data(), 32) == 0x8A9136AAu);
  CHECK(crc32c(ones.data(), 32) == 0x62A8AB43u);
  CHECK(crc32c(up.data(), 32) == 0x46DD794Eu);
  CHECK(crc32c("", 0) == 0u);
  // continuing over a second piece equals one pass
  CHECK(crc32c("56789", 5, crc32c("1234", 4)) == 0xE3069283u);
  // the independent bitwise CRC of the test reader agrees
  CHECK(testing::bitwise_crc32c("123456789") == 0xE3069283u);
  // TFRecord's mask, value from the reference implementation
  CHECK(mask_crc32c(0xE3069283u) == 0xc78ab0e5u);
}

TEST_CASE("events are encoded byte for byte as the protobuf library encodes them",
          "[tensorboard]") {
  // Bytes from Event(wall_time=1.5, file_version="brain.Event:2").SerializeToString() and its
  // TFRecord as TensorBoard's own writer frames it.
  std::string version = core::insight::encode_event(1.5, 0, "brain.Event:2", nullptr);
  CHECK(hex(version) == "09000000000000f83f1a0d627261696e2e4576656e743a32");
  CHECK(hex(core::insight::tfrecord(version)) ==
        "1800000000000000a37f4b22"
        "09000000000000f83f1a0d627261696e2e4576656e743a32"
        "2a28646c");
  // Event(wall_time=1.5, step=3, summary=Summary(value=[Value(tag="a", simple_value=2.0)]))
  core::insight::Summary s;
  s.scalar("a", 2.0);
  CHECK(hex(core::insight::encode_event(1.5, 3, "", &s)) ==
        "09000000000000f83f10032a0a0a080a01611500000040");
}

TEST_CASE("an event file reads back with its steps, wall times, tags and values", "[tensorboard]") {
  std::string dir = testing::scratch_dir("tb-roundtrip") + "/tb";
  std::string path;
  {
    core::insight::EventWriter w(dir);
    path = w.path();
    core::insight::Summary s1;
    s1.scalar("loss/lm_loss", 5.25);
    s1.scalar("optim/lr", 3e-4);
    w.write(1, s1, 1700000000.25);
    core::insight::Summary s2;
    s2.scalar("loss/lm_loss", 4.5);
    s2.histogram("expert_load/layer_0", {0.5, 1.0, 1.0, 1.5, 0.25, 1.75});
    w.write(123456789012LL, s2, 1700000001.5);
    // readable while the writer is still open: every write is flushed
    CHECK(testing::read_events(path).size() == 3);
  }
  CHECK(event_file(dir) == path);
  auto ev = testing::read_events(path);
  REQUIRE(ev.size() == 3);
  CHECK(ev[0].file_version == "brain.Event:2");
  CHECK(ev[0].wall_time > 1.6e9);
  CHECK(ev[1].step == 1);
  CHECK(ev[1].wall_time == 1700000000.25);
  REQUIRE(ev[1].values.size() == 2);
  CHECK(ev[1].values[0].tag == "loss/lm_loss");
  CHECK(ev[1].values[0].has_simple);
  CHECK(ev[1].values[0].simple_value == 5.25f);
  CHECK(ev[1].values[1].tag == "optim/lr");
  CHECK(ev[1].values[1].simple_value == static_cast<float>(3e-4));
  CHECK(ev[2].step == 123456789012LL);
  CHECK(ev[2].wall_time == 1700000001.5);
  REQUIRE(ev[2].values.size() == 2);
  const testing::TbValue& h = ev[2].values[1];
  CHECK(h.tag == "expert_load/layer_0");
  REQUIRE(h.has_histo);
  CHECK(!h.has_simple);
  CHECK(h.histo.min == 0.25);
  CHECK(h.histo.max == 1.75);
  CHECK(h.histo.num == 6);
  CHECK(h.histo.sum == Approx(6.0));
  CHECK(h.histo.sum_squares == Approx(0.25 + 1 + 1 + 2.25 + 0.0625 + 3.0625));
  REQUIRE(h.histo.bucket.size() == h.histo.bucket_limit.size());
  double count = 0;
  for (size_t i = 0; i < h.histo.bucket.size(); ++i) {
    count += h.histo.bucket[i];
    if (i > 0) CHECK(h.histo.bucket_limit[i] > h.histo.bucket_limit[i - 1]);
  }
  CHECK(count == 6);
  CHECK(h.histo.bucket_limit.back() == 1.75);
  CHECK(h.histo.bucket.front() == 1);  // 0.25 alone in the first bucket
}

TEST_CASE("a corrupted event file fails the reader's CRC check", "[tensorboard]") {
  // The reader must be able to fail: flip one data byte of a written record.
  std::string rec = core::insight::tfrecord(core::insight::encode_event(2.0, 5, "", nullptr));
  CHECK(testing::tfrecords(rec).size() == 1);
  std::string bad = rec;
  bad[14] ^= 0x01;
  CHECK_THROWS(testing::tfrecords(bad));
  bad = rec;
  bad[0] ^= 0x01;  // the length
  CHECK_THROWS(testing::tfrecords(bad));
}

TEST_CASE("MetricsWriter writes every logged field as a scalar and loads as histograms",
          "[tensorboard]") {
  std::string run = testing::scratch_dir("tb-metrics");
  core::StepMetrics m;
  m.step = 4;
  m.total_steps = 10;
  m.loss = 5.5, m.lm_loss = 5.0, m.mtp_loss = 5.2, m.aux_loss = 0.01;
  m.lr = 1e-3, m.grad_norm = 0.75, m.tokens = 4096, m.tokens_per_s = 12345, m.step_time_s = 0.3;
  m.max_vio = 0.25;
  {
    core::MetricsWriter w(run, /*enabled=*/true, /*num_experts=*/4);
    w.write(m);
    w.write_loads(4, {{10, 10, 10, 10}, {20, 5, 10, 5}});
    m.step = 5;
    m.eval_loss = 4.75;
    m.entropy_floor = 0.5;
    w.write(m);
  }
  auto ev = testing::read_events(event_file(run + "/tb"));
  REQUIRE(ev.size() == 4);  // version, scalars of step 4, loads of step 4, scalars of step 5
  std::set<std::string> tags;
  for (const auto& v : ev[1].values) tags.insert(v.tag);
  for (const char* t :
       {"loss/loss", "loss/lm_loss", "loss/mtp_loss", "moe/aux_loss", "optim/lr",
        "optim/grad_norm", "speed/tokens_per_s", "speed/step_time_s", "moe/max_vio"})
    CHECK(tags.count(t) == 1);
  CHECK(tags.count("loss/eval_loss") == 0);  // not evaluated at step 4
  for (const auto& v : ev[1].values) {
    CHECK(v.tag.find("step") != 0);
    CHECK(v.tag != "tokens");
  }
  // each scalar equals the field (as float32)
  std::map<std::string, float> expect = {{"loss/lm_loss", 5.0f},
                                         {"optim/lr", 1e-3f},
                                         {"speed/tokens_per_s", 12345.0f},
                                         {"moe/max_vio", 0.25f}};
  for (const auto& v : ev[1].values)
    if (expect.count(v.tag)) CHECK(v.simple_value == expect[v.tag]);
  CHECK(ev[1].step == 4);
  CHECK(ev[2].step == 4);
  REQUIRE(ev[2].values.size() == 2);
  CHECK(ev[2].values[1].tag == "expert_load/layer_1");
  CHECK(ev[2].values[1].histo.num == 4);
  CHECK(ev[2].values[1].histo.sum == Approx(4.0));  // relative loads: mean 1
  CHECK(ev[2].values[1].histo.max == 2.0);
  CHECK(ev[2].values[1].histo.min == 0.5);
  CHECK(ev[2].values[0].histo.min == 1.0);  // balanced layer
  CHECK(ev[2].values[0].histo.max == 1.0);
  bool eval_seen = false;
  for (const auto& v : ev[3].values)
    if (v.tag == "loss/eval_loss") eval_seen = v.simple_value == 4.75f;
  CHECK(eval_seen);
  CHECK(ev[3].step == 5);
  CHECK(ev[1].wall_time > 1.6e9);
}

TEST_CASE("MetricsWriter without TensorBoard, or disabled, writes no event file", "[tensorboard]") {
  std::string run = testing::scratch_dir("tb-off");
  { core::MetricsWriter w(run, true, 4, /*tensorboard=*/false); }
  CHECK(fs::exists(run + "/metrics.jsonl"));
  CHECK(!fs::exists(run + "/tb"));
  std::string other = testing::scratch_dir("tb-disabled");
  { core::MetricsWriter w(other + "/run", /*enabled=*/false, 4); }
  CHECK(!fs::exists(other + "/run"));
}

TEST_CASE("config: run.tensorboard and train.expect keys and their rules",
          "[tensorboard][config]") {
  CHECK(core::Config{}.run.tensorboard);
  CHECK(!core::load_config("", {"run.tensorboard=false"}).run.tensorboard);
  auto c = core::load_config(
      "", {"train.expect.eval_loss_below=2.5", "train.expect.gap_closed_above=80"});
  CHECK(c.train.expect.eval_loss_below == 2.5);
  CHECK(c.train.expect.gap_closed_above == 80);
  CHECK_THROWS_WITH(core::load_config("", {"train.expect.gap_closed_above=150"}),
                    Catch::Contains("train.expect.gap_closed_above = 150 must be a percentage"));
  CHECK_THROWS_WITH(core::load_config("", {"train.expect.eval_loss_below=-1"}),
                    Catch::Contains("train.expect.eval_loss_below"));
  CHECK_THROWS_WITH(core::load_config("", {"train.expect.eval_loss_below=3", "train.eval_every=0"}),
                    Catch::Contains("train.eval_every = 0"));
  CHECK_THROWS_AS(core::load_config("", {"train.expect.gap_closed_above=5", "train.eval_every=0"}),
                  core::ConfigError);
}
