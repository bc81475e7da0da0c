// flotilla: the one binary. Subcommands are registered in launch/cli.cpp.
#include "launch/cli.hpp"

int main(int argc, char** argv) { return launch::run_cli(argc, argv); }
