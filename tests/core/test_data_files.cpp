// Tests of the file-backed datasets: text, llm.c token files and Megatron indexed datasets, each
// round-tripped through files written here exactly as the original tools write them, and every
// rejection checked for a message that names the file, what was found and what to do.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/data/dataset.hpp"
#include "core/data/sources.hpp"
#include "core/error.hpp"
#include "data_test_helpers.hpp"

namespace fs = std::filesystem;
using core::Config;
using core::DataError;
using namespace core::data;
using namespace data_test;
using Catch::Matchers::Contains;

namespace {

// A fresh directory under /tmp, removed with everything in it when the test ends.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::path("/tmp") /
           ("flotilla_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  REQUIRE(f.good());
}

template <class T>
void append(std::vector<unsigned char>& buf, T v) {
  const auto* p = reinterpret_cast<const unsigned char*>(&v);
  buf.insert(buf.end(), p, p + sizeof(T));
}

// As llm.c's dev/data/data_common.py write_datafile(): 256 int32 header (magic, version, count,
// zeros), then the tokens as uint16 (GPT-2) or uint32 (LLaMA-3).
void write_llmc(const std::string& path, const std::vector<int64_t>& toks, int32_t magic,
                int32_t version, int width) {
  std::vector<unsigned char> buf;
  std::vector<int32_t> header(256, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = static_cast<int32_t>(toks.size());
  for (int32_t h : header) append(buf, h);
  for (int64_t t : toks) {
    if (width == 2) append(buf, static_cast<uint16_t>(t));
    else append(buf, static_cast<uint32_t>(t));
  }
  write_file(path, buf.data(), buf.size());
}

// As Megatron-LM's _IndexWriter / MMapIndexedDatasetBuilder: PREFIX.bin holds the sequences back
// to back; PREFIX.idx holds the magic, version 1, dtype code, counts, sizes, byte pointers and
// document indices (here one document per sequence: doc_idx = 0..S).
void write_megatron(const std::string& prefix, const std::vector<std::vector<int64_t>>& seqs,
                    uint8_t code, int width, uint64_t version = 1) {
  std::vector<unsigned char> bin, idx;
  for (const auto& s : seqs)
    for (int64_t t : s) {
      if (width == 1) append(bin, static_cast<uint8_t>(t));
      else if (width == 2) append(bin, static_cast<uint16_t>(t));
      else if (width == 4) append(bin, static_cast<int32_t>(t));
      else append(bin, static_cast<int64_t>(t));
    }
  const char magic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
  idx.insert(idx.end(), magic, magic + 9);
  append(idx, version);
  append(idx, code);
  append(idx, static_cast<uint64_t>(seqs.size()));
  append(idx, static_cast<uint64_t>(seqs.size() + 1));
  for (const auto& s : seqs) append(idx, static_cast<int32_t>(s.size()));
  int64_t ptr = 0;
  for (const auto& s : seqs) {
    append(idx, ptr);
    ptr += static_cast<int64_t>(s.size()) * width;
  }
  for (size_t d = 0; d <= seqs.size(); ++d) append(idx, static_cast<int64_t>(d));
  write_file(prefix + ".bin", bin.data(), bin.size());
  write_file(prefix + ".idx", idx.data(), idx.size());
}


}  // namespace

TEST_CASE("text: windows are byte slices of the right split", "[data]") {
  TempDir dir;
  std::vector<unsigned char> bytes(5000);
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<unsigned char>(core::data::detail::mix64(i) >> 56);
  const std::string path = dir.file("corpus.txt");
  write_file(path, bytes.data(), bytes.size());
  Config c = small_config();
  c.data.kind = "text";
  c.data.path = path;
  c.model.vocab_size = 256;
  c.data.val_fraction = 0.1;  // val = the last 500 bytes
  auto ds = make_dataset(c);
  const int64_t L = ds->window_len(), ntrain = 4500;
  CHECK(ds->entropy_floor() < 0);  // unknown for real data
  CHECK_THAT(ds->describe(), Contains("text") && Contains(path) && Contains("5000 bytes") &&
                                 Contains("train 4500 / val 500"));
  for (int64_t i = 0; i < 200; ++i)
    for (Split s : {Split::train, Split::val}) {
      auto w = window_of(*ds, s, i);
      std::vector<unsigned char> wb(w.begin(), w.end());
      auto lo = s == Split::train ? bytes.begin() : bytes.begin() + ntrain;
      auto hi = s == Split::train ? bytes.begin() + ntrain : bytes.end();
      auto at = std::search(lo, hi, wb.begin(), wb.end());
      INFO("split " << (s == Split::train ? "train" : "val") << " window " << i);
      REQUIRE(at != hi);
      REQUIRE(at + L <= hi);
      CHECK(window_of(*ds, s, i) == w);
    }
}

TEST_CASE("text: rejections", "[data]") {
  TempDir dir;
  Config c = small_config();  // windows of 34 bytes
  c.data.kind = "text";
  c.model.vocab_size = 256;
  c.data.val_fraction = 0.1;
  c.data.path = dir.file("missing.txt");
  CHECK_THAT(error_of<DataError>([&] { make_dataset(c); }),
             Contains("cannot open") && Contains("missing.txt") && Contains("No such file"));
  std::vector<unsigned char> bytes(67, 'a');
  write_file(dir.file("short.txt"), bytes.data(), bytes.size());
  c.data.path = dir.file("short.txt");
  CHECK_THAT(error_of<DataError>([&] { make_dataset(c); }),
             Contains("too short") && Contains("67 bytes") && Contains("at least 68 bytes"));
  bytes.push_back('b');  // 68 bytes: exactly one window per split
  write_file(dir.file("short.txt"), bytes.data(), bytes.size());
  auto ds = make_dataset(c);
  CHECK(window_of(*ds, Split::val, 3).back() == 'b');
  write_file(dir.file("empty.txt"), bytes.data(), 0);
  c.data.path = dir.file("empty.txt");
  CHECK_THAT(error_of<DataError>([&] { make_dataset(c); }), Contains("holds 0 bytes"));
  c.model.vocab_size = 200;
  CHECK_THAT(error_of<DataError>([&] { make_dataset(c); }),
             Contains("model.vocab_size = 200") && Contains("at least 256"));
}

TEST_CASE("llm.c token files: uint16 and uint32 round trips", "[data]") {
  TempDir dir;
  struct Case {
    int32_t magic, version;
    int width;
    int64_t base, vocab;
    const char* label;
  };
  for (Case k : {Case{20240520, 1, 2, 0, 65536, "llm.c uint16"},
                 Case{20240801, 7, 4, 100000, 200000, "llm.c uint32"}}) {
    const int64_t N = 3000;
    std::vector<int64_t> toks(N);
    for (int64_t i = 0; i < N; ++i) toks[i] = k.base + i;  // a token names its own position
    const std::string path = dir.file(std::string("toks_") + std::to_string(k.width) + ".bin");
    write_llmc(path, toks, k.magic, k.version, k.width);
    Config c = small_config();
    c.data.kind = "tokens";
    c.data.path = path;
    c.model.vocab_size = static_cast<int>(k.vocab);
    c.data.val_fraction = 0.05;  // val = the last 150 tokens
    auto ds = make_dataset(c);
    const int64_t L = ds->window_len(), ntrain = N - 150;
    CHECK_THAT(ds->describe(), Contains(k.label) && Contains("3000 tokens") &&
                                   Contains("train 2850 / val 150"));
    std::set<int64_t> starts;
    for (int64_t i = 0; i < 300; ++i)
      for (Split s : {Split::train, Split::val}) {
        auto w = window_of(*ds, s, i);
        const int64_t start = w[0] - k.base;
        for (int64_t j = 0; j < L; ++j) REQUIRE(w[j] == k.base + start + j);
        if (s == Split::train) {
          REQUIRE((start >= 0 && start + L <= ntrain));
          starts.insert(start);
        } else {
          REQUIRE((start >= ntrain && start + L <= N));
        }
      }
    CHECK(starts.size() > 250);  // offsets are spread over the region, not a few fixed ones
  }
}

TEST_CASE("llm.c token files: rejections", "[data]") {
  TempDir dir;
  Config c = small_config();  // windows of 34 tokens
  c.data.kind = "tokens";
  c.model.vocab_size = 256;
  std::vector<int64_t> toks(1000);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int64_t>(i % 256);
  const std::string path = dir.file("bad.bin");
  c.data.path = path;
  auto msg = [&] { return error_of<DataError>([&] { make_dataset(c); }); };

  write_llmc(path, toks, 12345, 1, 2);
  CHECK_THAT(msg(), Contains(path) && Contains("header[0] (magic) is 12345") &&
                        Contains("20240520") && Contains("20240801"));
  write_llmc(path, toks, 20240520, 7, 2);
  CHECK_THAT(msg(), Contains("header[1] (version) = 1, found 7"));
  write_llmc(path, toks, 20240801, 1, 4);
  CHECK_THAT(msg(), Contains("header[1] (version) = 7, found 1"));

  write_llmc(path, toks, 20240520, 1, 2);
  fs::resize_file(path, 1024 + 2 * 1000 - 10);
  CHECK_THAT(msg(), Contains("is 3014 bytes") && Contains("promises 1000 uint16 tokens") &&
                        Contains("3024 bytes") && Contains("truncated"));
  fs::resize_file(path, 100);
  CHECK_THAT(msg(), Contains("shorter than its 1024-byte header"));

  toks[777] = 300;
  write_llmc(path, toks, 20240520, 1, 2);
  CHECK_THAT(msg(), Contains("token 300 at token position 777") &&
                        Contains("model.vocab_size = 256") && Contains("at least 301"));

  write_llmc(path, std::vector<int64_t>(40, 1), 20240520, 1, 2);
  CHECK_THAT(msg(), Contains("too short") && Contains("holds 40 tokens") &&
                        Contains("at least 68 tokens"));

  c.data.path = dir.file("nothing_here.bin");
  CHECK_THAT(msg(), Contains("nothing_here.bin") && Contains("No such file"));
  c.data.path = dir.file("nothing_here");
  CHECK_THAT(msg(), Contains("not found") && Contains("PREFIX.idx"));
}

TEST_CASE("token ranges are checked per window when the stream is too large to scan", "[data]") {
  TempDir dir;
  const std::string path = dir.file("wide.bin");
  write_llmc(path, std::vector<int64_t>(500, 1000), 20240520, 1, 2);
  Config c = small_config();
  c.model.vocab_size = 256;
  detail::TokenStream s;
  s.file = MmapFile(path);
  s.offset = 1024;
  s.count = 500;
  s.type = detail::TokenType::u16;
  s.path = path;
  s.label = "tokens (llm.c uint16)";
  detail::StreamDataset ds(std::move(s), c, /*check_range=*/true, /*scan_limit=*/0);
  std::vector<int32_t> w(static_cast<size_t>(ds.window_len()));
  CHECK_THAT(error_of<DataError>([&] { ds.window(Split::val, 2, w.data()); }),
             Contains("token 1000 at token position") && Contains("val window 2") &&
                 Contains("model.vocab_size = 256"));
}

TEST_CASE("Megatron indexed datasets: round trips for every integer dtype", "[data]") {
  TempDir dir;
  const std::vector<int64_t> lengths = {5, 17, 0, 40, 300, 1, 900, 37, 700};
  struct Case {
    uint8_t code;
    int width;
    const char* name;
  };
  for (Case k : {Case{1, 1, "uint8"}, Case{3, 2, "int16"}, Case{4, 4, "int32"},
                 Case{5, 8, "int64"}, Case{8, 2, "uint16"}}) {
    const int64_t mod = k.width == 1 ? 256 : 30000;
    std::vector<std::vector<int64_t>> seqs;
    int64_t pos = 0;
    for (int64_t n : lengths) {
      seqs.emplace_back();
      for (int64_t j = 0; j < n; ++j, ++pos) seqs.back().push_back(pos % mod);
    }
    const int64_t N = pos;  // 2000
    const std::string prefix = dir.file(std::string("mg_") + k.name);
    write_megatron(prefix, seqs, k.code, k.width);
    Config c = small_config();
    c.data.kind = "tokens";
    c.model.vocab_size = static_cast<int>(mod);
    c.data.val_fraction = 0.1;
    std::vector<std::vector<int32_t>> first;
    for (const std::string& p : {prefix, prefix + ".bin", prefix + ".idx"}) {
      c.data.path = p;
      auto ds = make_dataset(c);
      INFO("dtype " << k.name << " path " << p);
      CHECK_THAT(ds->describe(), Contains(std::string("megatron ") + k.name) &&
                                     Contains("9 sequences") && Contains("2000 tokens"));
      const int64_t L = ds->window_len(), ntrain = N - 200;
      std::vector<std::vector<int32_t>> got;
      for (int64_t i = 0; i < 100; ++i)
        for (Split s : {Split::train, Split::val}) {
          auto w = window_of(*ds, s, i);
          got.push_back(w);
          // Recover the start from the first two tokens (tokens are positions mod `mod`).
          int64_t start = -1;
          for (int64_t cand = w[0]; cand < N; cand += mod)
            if (cand + L <= N && (cand + 1) % mod == w[1]) {
              bool ok = true;
              for (int64_t j = 0; j < L && ok; ++j) ok = w[j] == (cand + j) % mod;
              if (ok && (s == Split::train ? cand + L <= ntrain : cand >= ntrain)) start = cand;
            }
          REQUIRE(start >= 0);
        }
      if (first.empty()) first = got;
      CHECK(got == first);  // prefix, .bin and .idx name the same dataset
    }
  }
}

TEST_CASE("Megatron indexed datasets: rejections", "[data]") {
  TempDir dir;
  const std::string prefix = dir.file("mg");
  Config c = small_config();
  c.data.kind = "tokens";
  c.data.path = prefix;
  c.model.vocab_size = 256;
  std::vector<std::vector<int64_t>> seqs = {std::vector<int64_t>(100, 3),
                                            std::vector<int64_t>(200, 4)};
  auto msg = [&] { return error_of<DataError>([&] { make_dataset(c); }); };
  auto patch = [&](const std::string& file, int64_t at, const std::string& bytes) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(at);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };

  write_megatron(prefix, seqs, 4, 4);
  REQUIRE(make_dataset(c)->window_len() == 34);
  patch(prefix + ".idx", 0, "XMIDIDX");
  CHECK_THAT(msg(), Contains("mg.idx") && Contains("not a Megatron") && Contains("MMIDIDX"));

  write_megatron(prefix, seqs, 4, 4, /*version=*/2);
  CHECK_THAT(msg(), Contains("version is 2, expected 1"));

  write_megatron(prefix, seqs, 7, 4);
  CHECK_THAT(msg(), Contains("dtype code 7 (float32)"));
  write_megatron(prefix, seqs, 2, 1);
  CHECK_THAT(msg(), Contains("int8"));

  write_megatron(prefix, seqs, 4, 4);
  fs::resize_file(prefix + ".idx", fs::file_size(prefix + ".idx") - 8);
  CHECK_THAT(msg(), Contains("header counts 2 sequences and 3 document indices") &&
                        Contains("= 82 bytes"));

  write_megatron(prefix, seqs, 4, 4);
  fs::resize_file(prefix + ".bin", 1000);
  CHECK_THAT(msg(), Contains("mg.bin") && Contains("is 1000 bytes") &&
                        Contains("ending at byte 1200") && Contains("truncated"));

  write_megatron(prefix, seqs, 4, 4);
  fs::remove(prefix + ".bin");
  CHECK_THAT(msg(), Contains("mg.bin") && Contains("No such file"));

  seqs[1][57] = 1000;
  write_megatron(prefix, seqs, 4, 4);
  CHECK_THAT(msg(), Contains("token 1000 at token position 157") && Contains("at least 1001"));
  seqs[1][57] = -5;
  write_megatron(prefix, seqs, 4, 4);
  CHECK_THAT(msg(), Contains("token -5 at token position 157 is negative"));
}

