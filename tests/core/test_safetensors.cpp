// The safetensors writer against known bytes (files produced by the reference implementation,
// safetensors 0.8 via its numpy API, for the same tensors in the same order), and the reader's
// checks: it reads those bytes back and refuses truncated, padded, overlapping or malformed files
// naming the file and the fault.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/checkpoint/files.hpp"
#include "core/checkpoint/safetensors.hpp"
#include "core/error.hpp"

using Catch::Matchers::Contains;
using namespace core::checkpoint;

namespace {

// save({"a": float32 [1, -2]}, metadata={"k": "v"})
const char* kRefA =
    "50000000000000007b225f5f6d657461646174615f5f223a7b226b223a2276227d2c2261223a7b226474797065"
    "223a22463332222c227368617065223a5b325d2c22646174615f6f666673657473223a5b302c385d7d7d200000"
    "803f000000c0";
// save({"w": int64 [[1, 2], [3, 4]], "h": float16 [0.5, -1, 2]})  (the reference puts w first)
const char* kRefB =
    "70000000000000007b2277223a7b226474797065223a22493634222c227368617065223a5b322c325d2c226461"
    "74615f6f666673657473223a5b302c33325d7d2c2268223a7b226474797065223a22463136222c227368617065"
    "223a5b335d2c22646174615f6f666673657473223a5b33322c33385d7d7d010000000000000002000000000000"
    "0003000000000000000400000000000000003800bc0040";

std::string unhex(const char* h) {
  std::string out;
  for (size_t i = 0; h[i] && h[i + 1]; i += 2)
    out += static_cast<char>(std::stoi(std::string(h + i, 2), nullptr, 16));
  return out;
}

std::string tmp_path(const std::string& name) {
  return "/tmp/flotilla-st-" + std::to_string(::getpid()) + "-" + name;
}

std::string slurp(const std::string& path) {
  return read_small_file(path, "test");
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

TEST_CASE("safetensors writer produces the reference implementation's bytes",
          "[checkpoint][safetensors]") {
  const std::string a = tmp_path("a.safetensors");
  {
    const float v[2] = {1.0f, -2.0f};
    SafetensorsWriter w(a, {{"a", "F32", {2}, 0, 0}}, {{"k", "v"}});
    w.write(v, sizeof v);
    const FileDigest d = w.finish();
    CHECK(d.bytes == 96);
  }
  CHECK(slurp(a) == unhex(kRefA));

  const std::string b = tmp_path("b.safetensors");
  {
    const int64_t wv[4] = {1, 2, 3, 4};
    const uint16_t hv[3] = {0x3800, 0xbc00, 0x4000};  // 0.5, -1, 2 in float16
    SafetensorsWriter w(b, {{"w", "I64", {2, 2}, 0, 0}, {"h", "F16", {3}, 0, 0}}, {});
    w.write(wv, sizeof wv);
    w.write(hv, sizeof hv);
    const FileDigest d = w.finish();
    CHECK(d.bytes == 158);
    CHECK(d.xxh3 == digest_file(b).xxh3);  // the streamed hash is the file's hash
  }
  CHECK(slurp(b) == unhex(kRefB));
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST_CASE("safetensors reader reads reference files and converts dtypes",
          "[checkpoint][safetensors]") {
  const std::string b = tmp_path("rb.safetensors");
  spit(b, unhex(kRefB));
  SafetensorsFile f(b);
  REQUIRE(f.tensors().size() == 2);
  CHECK(f.metadata().empty());
  const TensorInfo* h = f.find("h");
  REQUIRE(h != nullptr);
  CHECK(h->shape == std::vector<int64_t>{3});
  float out[3];
  convert_elements(f.data(*h), h->dtype, 3, core::DType::f32, out, "h");
  CHECK(out[0] == 0.5f);
  CHECK(out[1] == -1.0f);
  CHECK(out[2] == 2.0f);
  const TensorInfo* w = f.find("w");
  REQUIRE(w != nullptr);
  int64_t wv[4];
  convert_elements(f.data(*w), w->dtype, 4, core::DType::i64, wv, "w");
  CHECK(wv[3] == 4);
  CHECK_THROWS_WITH(convert_elements(f.data(*w), w->dtype, 4, core::DType::f32, out, "w"),
                    Contains("cannot convert I64"));
  std::vector<TensorInfo> ts;
  std::map<std::string, std::string> meta;
  read_safetensors_header(tmp_path("rb.safetensors"), ts, meta);
  CHECK(ts.size() == 2);

  const std::string a = tmp_path("ra.safetensors");
  spit(a, unhex(kRefA));
  SafetensorsFile fa(a);
  CHECK(fa.metadata().at("k") == "v");
  // BF16 of 1.0 and -2.0, and back
  uint16_t bf[2];
  convert_elements(fa.data(*fa.find("a")), "F32", 2, core::DType::bf16, bf, "a");
  CHECK(bf[0] == 0x3f80);
  CHECK(bf[1] == 0xc000);
  std::remove(a.c_str());
  std::remove(b.c_str());
}

TEST_CASE("safetensors reader refuses damaged files with the file name and the fault",
          "[checkpoint][safetensors]") {
  const std::string ref = unhex(kRefB), p = tmp_path("bad.safetensors");
  auto refuses = [&](const std::string& bytes, const std::string& what) {
    spit(p, bytes);
    CHECK_THROWS_AS(SafetensorsFile(p), core::DataError);
    CHECK_THROWS_WITH(SafetensorsFile(p), Contains(p) && Contains(what));
    std::vector<TensorInfo> ts;
    std::map<std::string, std::string> meta;
    CHECK_THROWS_WITH(read_safetensors_header(p, ts, meta), Contains(what));
  };
  refuses(ref.substr(0, ref.size() - 1), "truncated");
  refuses(ref + "x", "longer than its header says");
  refuses(ref.substr(0, 5), "shorter than the 8-byte");
  std::string huge = ref;
  huge[5] = '\x7f';  // header length far beyond the file
  refuses(huge, "does not fit the file");
  std::string notjson = ref;
  notjson[8] = '[';
  refuses(notjson, "not valid JSON");
  std::string overlap = ref;  // h starts at 30 instead of 32: overlaps w
  overlap.replace(overlap.find("[32,38]"), 7, "[30,36]");
  refuses(overlap, "tile the data");
  std::string dtype = ref;
  dtype.replace(dtype.find("F16"), 3, "Q16");
  refuses(dtype, "unknown dtype 'Q16'");
  std::string count = ref;  // 3 float16 need 6 bytes, not 4
  count.replace(count.find("[32,38]"), 7, "[32,36]");
  refuses(count, "do not hold 6 bytes");
  std::remove(p.c_str());
}
