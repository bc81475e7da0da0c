#include "launch/cli.hpp"

#include <cstdio>

namespace launch {

int run_cli(int argc, char** argv) {
  std::puts("flotilla: under construction");
  return 0;
}

}  // namespace launch
