// Before training: which checkpoint a run starts from, and whether it can save where it will.
// Both are collective: every rank gets the same answer or the same error.
#pragma once

#include <string>

namespace parallel {
class Communicator;
}

namespace core::checkpoint {

// train.resume: "never" -> ""; "auto" -> the latest complete checkpoint under root, or "" when
// there is none (or root is ""); a path -> that checkpoint, or the latest one under it (DataError
// when there is none). Incomplete checkpoints are never chosen.
std::string resolve_resume(const std::string& resume, const std::string& root,
                           parallel::Communicator* world);

// Creates root and writes and removes a probe file there (rank 0), so that an unwritable
// checkpoint directory is a ConfigError before the first step rather than a failure hours later.
void check_writable(const std::string& root, parallel::Communicator* world);

}  // namespace core::checkpoint
