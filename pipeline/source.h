#pragma once
// Where the images come from: a directory walked in a stable sorted order, or a list file,
// filtered by extension and cut to this process's shard.
#include <string>
#include <vector>

#include "config.h"

namespace imgpipe {

/// The images this process takes, in input order. Throws std::runtime_error when the
/// input path does not exist or cannot be listed.
[[nodiscard]] std::vector<std::string> list_inputs(const InputConfig& in);

}  // namespace imgpipe
