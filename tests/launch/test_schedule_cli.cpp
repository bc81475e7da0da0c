// `flotilla schedule` as users meet it: the oracle op order, the simulation table, the trace file
// and the exit code 2 for bad input.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "run_binary.hpp"

using namespace testing;
using Catch::Matchers::Contains;

TEST_CASE("flotilla schedule prints DeepSeek's reference op order", "[cli][schedule]") {
  for (std::string name : {"dualpipev_pp4_chunks8", "dualpipe_pp4_chunks10"}) {
    std::string kind = name.substr(0, name.find('_'));
    std::string chunks = name.substr(name.find("chunks") + 6);
    auto r = run_flotilla("schedule --kind " + kind + " --pp 4 --chunks " + chunks);
    INFO(r.output);
    CHECK(r.code == 0);
    CHECK(r.output == read_text(std::string(FLOTILLA_TEST_DATA) + "/oracle/" + name + ".txt"));
  }
}

TEST_CASE("flotilla schedule --simulate adds the per-rank table after the op lines",
          "[cli][schedule]") {
  auto r = run_flotilla("schedule --kind dualpipe --pp 4 --chunks 8 --simulate F=1,B=2,W=1,FB=3");
  INFO(r.output);
  CHECK(r.code == 0);
  std::string oracle =
      read_text(std::string(FLOTILLA_TEST_DATA) + "/oracle/dualpipe_pp4_chunks8.txt");
  CHECK(r.output.substr(0, oracle.size()) == oracle);
  CHECK_THAT(r.output, Contains("makespan 26") && Contains("peak_activations"));
  // rank 0: busy 24, idle 2, peak activations 5
  CHECK_THAT(r.output, Contains("r0            24          2"));
  auto m = run_flotilla("schedule --kind 1f1b --pp 2 --chunks 2 --comm");
  INFO(m.output);
  CHECK(m.output ==
        "r0: F0.0 send_forward(0.0) commit F0.1 send_forward(0.1) recv_backward(0.0) commit B0.0 "
        "recv_backward(0.1) commit B0.1\n"
        "r1: recv_forward(0.0) commit F0.0 B0.0 send_backward(0.0) recv_forward(0.1) commit F0.1 "
        "B0.1 send_backward(0.1) commit\n");
  auto d = run_flotilla("schedule --kind 1f1b --pp 2 --chunks 2 --simulate");
  INFO(d.output);
  CHECK(d.code == 0);
  CHECK_THAT(d.output, Contains("makespan 9"));
  // the order expert parallelism trains with: 2F + 2(F + I) + 2I + 4W = 12, four slots
  auto p = run_flotilla("schedule --kind sequential --pp 1 --chunks 4 --ep-overlap --simulate");
  INFO(p.output);
  CHECK(p.code == 0);
  CHECK_THAT(p.output, Contains("r0: (F0.0&F0.1) (F0.2&I0.0) (F0.3&I0.1) W0.0 (I0.2&I0.3) W0.1 W0.2 W0.3\n") &&
                           Contains("makespan 12"));
  CHECK_THAT(p.output, Contains("                3            4\n"));
  // Lone passes waiting as long as they compute (A=1): DualPipeV pp 2 x 8 in the reference order
  // and in the expert-parallel form, whose turning rank pairs its warm-up forwards.
  auto a = run_flotilla("schedule --kind dualpipev --pp 2 --chunks 8 --simulate A=1");
  auto f = run_flotilla("schedule --kind dualpipev --pp 2 --chunks 8 --ep-overlap --simulate A=1");
  INFO(a.output << f.output);
  CHECK_THAT(a.output, Contains("A=1: makespan 61"));
  CHECK_THAT(f.output, Contains("r1: F0.0 (F1.0&F0.1) (F1.1&F0.2) B1.0") && Contains("A=1: makespan 59"));
  // and with the lone passes' and commits' waits filled with deferred weight work, as the
  // executor does
  auto g = run_flotilla("schedule --kind dualpipev --pp 2 --chunks 8 --ep-overlap --simulate A=1,fill=1");
  INFO(g.output);
  CHECK_THAT(g.output, Contains("A=1 fill=1: makespan 55"));
}

TEST_CASE("flotilla schedule --trace writes a Chrome trace", "[cli][schedule]") {
  std::string dir = temp_dir("schedule-trace");
  auto r = run_flotilla("schedule --kind dualpipev --pp 2 --chunks 4 --trace " + dir + "/t.json");
  INFO(r.output);
  CHECK(r.code == 0);
  nlohmann::json trace = nlohmann::json::parse(read_text(dir + "/t.json"));
  int complete = 0;
  for (const auto& e : trace["traceEvents"]) complete += e["ph"] == "X";
  CHECK(complete >= 2 * 4 * 2);  // 2 ranks x 2 chunks x 4 micro-batches x (F, B), at least
}

TEST_CASE("flotilla schedule refuses bad input with exit code 2", "[cli][schedule]") {
  auto k = run_flotilla("schedule --kind zigzag --pp 2 --chunks 4");
  INFO(k.output);
  CHECK(k.code == 2);
  CHECK_THAT(k.output, Contains("zigzag") && Contains("dualpipev"));
  auto p = run_flotilla("schedule --kind dualpipe --pp 3 --chunks 12");
  CHECK(p.code == 2);
  CHECK_THAT(p.output, Contains("pp = 3"));
  auto s = run_flotilla("schedule --kind sequential --pp 2 --chunks 4");
  CHECK(s.code == 2);
  CHECK_THAT(s.output, Contains("pp = 2"));
  auto c = run_flotilla("schedule --kind 1f1b --pp 2 --chunks 4 --simulate F=1,Q=2");
  CHECK(c.code == 2);
  CHECK_THAT(c.output, Contains("'Q'"));
  CHECK_THAT(c.output, !Contains("r0:"));  // nothing printed before the error
  auto m = run_flotilla("schedule --kind 1f1b --pp 2");
  CHECK(m.code == 2);
  CHECK_THAT(m.output, Contains("--chunks"));
}
