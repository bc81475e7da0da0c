// Runs the Catch2 session over the linked test cases (tests/catch_session.cpp): the test mains
// call this instead of Catch::Session, so that Catch2's implementation, slow to compile, is
// built once for every test binary rather than once per main.
#pragma once

namespace testing {

// Catch::Session().run(argc, argv): applies the command line, runs the selected tests, and
// returns the number of failed assertions (capped), or a non-zero code for a bad command line.
int run_catch(int argc, char** argv);

}  // namespace testing
