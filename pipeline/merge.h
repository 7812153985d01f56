#pragma once
// Puts the parts of a sharded output folder (input.shard.count > 1, files `partN-...`) back
// together: merged predictions in input order, a merged index saying where each image's
// rows are, and a merged report. Tensor and output shards stay per part.
#include <cstdio>
#include <string>

namespace imgpipe {

/// Merges the parts in `dir` into merged-predictions.csv|jsonl, merged-index.csv and
/// merged-report.json (each written to .partial and renamed; the same bytes every time).
/// Holds every part's lock meanwhile. Returns kExitOk, kExitRuntime when a part is missing,
/// incomplete or running (each named in `log`), or kExitConfig when `dir` is not a sharded folder.
/// Throws std::runtime_error when a file cannot be written.
[[nodiscard]] int merge_parts(const std::string& dir, FILE* log);

}  // namespace imgpipe
