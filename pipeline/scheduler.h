#pragma once
// input.shard.index / count: auto, read from the scheduler that started this task: a Slurm
// job array or a Kubernetes Indexed Job.
#include <functional>

namespace imgpipe {

/// Reads an environment variable; null when unset (std::getenv in the tool, a map in tests).
using EnvReader = std::function<const char*(const char*)>;

/// Fills the shard index and/or count given as -1 (auto): Slurm's SLURM_ARRAY_TASK_ID with
/// SLURM_ARRAY_TASK_COUNT or _MIN/_MAX (and _STEP), else Kubernetes' JOB_COMPLETION_INDEX
/// with the count from the config or IMGPIPE_SHARD_COUNT. Throws ConfigError naming the
/// variable that is missing or inconsistent.
void resolve_scheduler_shard(int& index, int& count, const EnvReader& env);

}  // namespace imgpipe
