#include "scheduler.h"

#include <cstdlib>
#include <string>

#include "config.h"

namespace imgpipe {
namespace {

[[noreturn]] void fail(const std::string& what) { throw ConfigError("config key 'input.shard': " + what); }

/// The variable's integer value, `fallback` when unset; an error when set but not an integer.
long read_int(const EnvReader& env, const char* name, long fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (!*v || *end || x < 0) fail(std::string(name) + " is '" + v + "', expected a non-negative integer");
  return x;
}

}  // namespace

void resolve_scheduler_shard(int& index, int& count, const EnvReader& env) {
  long i = -1, n = -1;
  std::string from;  // the variable that gave the count, for messages
  if (env("SLURM_ARRAY_TASK_ID")) {
    const long id = read_int(env, "SLURM_ARRAY_TASK_ID", 0);
    const long lo = read_int(env, "SLURM_ARRAY_TASK_MIN", 0), step = read_int(env, "SLURM_ARRAY_TASK_STEP", 1);
    if (step == 0) fail("SLURM_ARRAY_TASK_STEP is 0");
    if (id < lo || (id - lo) % step)
      fail("SLURM_ARRAY_TASK_ID " + std::to_string(id) + " is not in the array SLURM_ARRAY_TASK_MIN " +
           std::to_string(lo) + " step " + std::to_string(step));
    i = (id - lo) / step;
    const long hi = read_int(env, "SLURM_ARRAY_TASK_MAX", -1);
    const long by_range = hi < 0 ? -1 : hi < lo ? 0 : (hi - lo) / step + 1;
    n = read_int(env, "SLURM_ARRAY_TASK_COUNT", by_range);
    from = env("SLURM_ARRAY_TASK_COUNT") ? "SLURM_ARRAY_TASK_COUNT" : "SLURM_ARRAY_TASK_MIN/MAX";
    if (n < 0) fail("SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is");
    // A throttled or partial array (--array=0-9%2, 0,3,7) still has COUNT == MAX-MIN+1 per step
    // only when it is a plain range; otherwise the shards would not cover the input.
    if (by_range >= 0 && n != by_range)
      fail("SLURM_ARRAY_TASK_COUNT " + std::to_string(n) + " disagrees with SLURM_ARRAY_TASK_MIN/MAX/STEP (" +
           std::to_string(by_range) + " tasks): shard arrays must be a plain range such as --array=0-3");
  } else if (env("JOB_COMPLETION_INDEX")) {
    i = read_int(env, "JOB_COMPLETION_INDEX", 0);
    n = read_int(env, "IMGPIPE_SHARD_COUNT", -1);
    from = "IMGPIPE_SHARD_COUNT";
    if (n < 0 && count < 0)
      fail("count: auto under a Kubernetes Indexed Job needs IMGPIPE_SHARD_COUNT (set it to the Job's completions)");
  } else {
    fail(std::string(index < 0 ? "index" : "count") +
         ": auto needs SLURM_ARRAY_TASK_ID (a Slurm job array) or JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); "
         "neither is set");
  }
  if (count < 0) count = int(n);
  else if (n >= 0 && n != count)
    fail("count " + std::to_string(count) + " but " + from + " says " + std::to_string(n) + " tasks");
  if (index < 0) index = int(i);
  else if (index != i)
    fail("index " + std::to_string(index) + " but the scheduler says this task is " + std::to_string(i));
  if (count < 1) fail(from + " gives " + std::to_string(count) + " tasks");
  if (index >= count)
    fail("this task's index " + std::to_string(index) + " is not below the count " + std::to_string(count) + " (" +
         from + ")");
}

}  // namespace imgpipe
