// The documentation stands alone: README.md and docs/*.md point at nothing outside the
// repository (users do not have the design folder beside it), and their relative links resolve.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;

TEST_CASE("docs: README and docs/*.md point only inside the repository", "[docs]") {
  const fs::path root = FLOTILLA_SOURCE_DIR;
  std::vector<fs::path> pages = {root / "README.md"};
  for (const auto& e : fs::directory_iterator(root / "docs"))
    if (e.path().extension() == ".md") pages.push_back(e.path());
  REQUIRE(pages.size() > 5);
  const std::regex link(R"(\]\(([^)#\s]+))");
  for (const auto& page : pages) {
    std::ifstream in(page);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    INFO(page.string());
    CHECK(text.find("shared/") == std::string::npos);
    CHECK(text.find("../") == std::string::npos);
    for (std::sregex_iterator it(text.begin(), text.end(), link), end; it != end; ++it) {
      const std::string target = (*it)[1];
      if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0) continue;
      INFO(target);
      CHECK(fs::exists(page.parent_path() / target));
    }
  }
}
