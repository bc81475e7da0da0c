// main of the single-process test binaries (one per source folder).
#include "catch_session.hpp"

int main(int argc, char** argv) { return testing::run_catch(argc, argv); }
