// input.shard.index / count: auto from Slurm job arrays and Kubernetes Indexed Jobs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "config.h"
#include "scheduler.h"
#include "test_util.h"

using namespace imgpipe;

namespace {

struct Env {
  std::map<std::string, std::string> vars;
  EnvReader reader() const {
    return [this](const char* k) -> const char* {
      auto it = vars.find(k);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

// index/count after resolving (-1 = auto), or the error text.
std::string resolve(const Env& env, int index = -1, int count = -1) {
  try {
    resolve_scheduler_shard(index, count, env.reader());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return std::to_string(index) + "/" + std::to_string(count);
}

TEST(SchedulerShard, SlurmArrayIdAndCount) {
  EXPECT_EQ(resolve({{{"SLURM_ARRAY_TASK_ID", "2"}, {"SLURM_ARRAY_TASK_COUNT", "4"}}}), "2/4");
  // --array=1-4: the index counts from the array's first task.
  EXPECT_EQ(resolve({{{"SLURM_ARRAY_TASK_ID", "1"}, {"SLURM_ARRAY_TASK_MIN", "1"}, {"SLURM_ARRAY_TASK_MAX", "4"}}}),
            "0/4");
  // --array=0-6:2 is tasks 0, 2, 4, 6.
  EXPECT_EQ(resolve({{{"SLURM_ARRAY_TASK_ID", "4"}, {"SLURM_ARRAY_TASK_MIN", "0"}, {"SLURM_ARRAY_TASK_MAX", "6"},
                      {"SLURM_ARRAY_TASK_STEP", "2"}, {"SLURM_ARRAY_TASK_COUNT", "4"}}}),
            "2/4");
  // An explicit count that agrees is fine; an index given in the config is kept when it agrees.
  EXPECT_EQ(resolve({{{"SLURM_ARRAY_TASK_ID", "3"}, {"SLURM_ARRAY_TASK_COUNT", "4"}}}, -1, 4), "3/4");
}

TEST(SchedulerShard, KubernetesIndexWithCountFromConfigOrEnv) {
  EXPECT_EQ(resolve({{{"JOB_COMPLETION_INDEX", "5"}, {"IMGPIPE_SHARD_COUNT", "8"}}}), "5/8");
  EXPECT_EQ(resolve({{{"JOB_COMPLETION_INDEX", "5"}}}, -1, 8), "5/8");
}

TEST(SchedulerShard, MissingOrInconsistentNamesTheVariable) {
  EXPECT_NE(resolve({}).find("SLURM_ARRAY_TASK_ID"), std::string::npos);
  EXPECT_NE(resolve({}).find("JOB_COMPLETION_INDEX"), std::string::npos);
  EXPECT_NE(resolve({{{"JOB_COMPLETION_INDEX", "1"}}}).find("IMGPIPE_SHARD_COUNT"), std::string::npos);
  EXPECT_NE(resolve({{{"SLURM_ARRAY_TASK_ID", "1"}}}).find("SLURM_ARRAY_TASK_COUNT"), std::string::npos);
  EXPECT_NE(resolve({{{"SLURM_ARRAY_TASK_ID", "x"}, {"SLURM_ARRAY_TASK_COUNT", "4"}}}).find("SLURM_ARRAY_TASK_ID is 'x'"),
            std::string::npos);
  const std::string beyond = resolve({{{"JOB_COMPLETION_INDEX", "4"}, {"IMGPIPE_SHARD_COUNT", "4"}}});
  EXPECT_NE(beyond.find("index 4 is not below the count 4 (IMGPIPE_SHARD_COUNT)"), std::string::npos) << beyond;
  const std::string disagree = resolve({{{"SLURM_ARRAY_TASK_ID", "0"}, {"SLURM_ARRAY_TASK_COUNT", "4"}}}, -1, 3);
  EXPECT_NE(disagree.find("SLURM_ARRAY_TASK_COUNT says 4"), std::string::npos) << disagree;
  const std::string holes = resolve({{{"SLURM_ARRAY_TASK_ID", "3"}, {"SLURM_ARRAY_TASK_MIN", "0"},
                                      {"SLURM_ARRAY_TASK_MAX", "7"}, {"SLURM_ARRAY_TASK_COUNT", "3"}}});
  EXPECT_NE(holes.find("SLURM_ARRAY_TASK_COUNT 3 disagrees"), std::string::npos) << holes;
}

TEST(SchedulerShard, ConfigAutoReadsTheEnvironment) {
  test::TempDir dir;
  test::write_file(dir / "c.yaml", "input: {path: data, shard: {index: auto, count: auto}}\n");
  ::unsetenv("SLURM_ARRAY_TASK_ID");
  ::setenv("JOB_COMPLETION_INDEX", "1", 1);
  ::setenv("IMGPIPE_SHARD_COUNT", "3", 1);
  const Config c = load_config(dir / "c.yaml", {});
  ::unsetenv("JOB_COMPLETION_INDEX");
  ::unsetenv("IMGPIPE_SHARD_COUNT");
  EXPECT_EQ(c.input.shard_index, 1);
  EXPECT_EQ(c.input.shard_count, 3);
  EXPECT_THROW((void)load_config(dir / "c.yaml", {}), ConfigError);
}

}  // namespace
