// The one translation unit that compiles Catch2's implementation (CATCH_CONFIG_RUNNER: the
// implementation without a main), shared by every test binary through flotilla_catch_session.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "catch_session.hpp"

int testing::run_catch(int argc, char** argv) { return Catch::Session().run(argc, argv); }
