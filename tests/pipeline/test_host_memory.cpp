// Host memory under a scheduler's cgroup limit, read from fake /proc and /sys trees.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "host_memory.h"
#include "test_util.h"

using namespace imgpipe;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMiB = 1 << 20;

void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// A node with 64 GiB total and 40 GiB available, and the given /proc/self/cgroup.
void node(const test::TempDir& root, const std::string& self_cgroup) {
  put(root.path() / "proc/meminfo", "MemTotal:       67108864 kB\nMemFree:  1000 kB\nMemAvailable:   41943040 kB\n");
  put(root.path() / "proc/self/cgroup", self_cgroup);
}

TEST(HostMemory, NoCgroupIsMemAvailable) {
  test::TempDir root;
  node(root, "0::/\n");
  const HostMemory m = read_host_memory(root.path().string());
  EXPECT_EQ(m.available, 40LL << 30);
  EXPECT_EQ(m.total, 64LL << 30);
  EXPECT_TRUE(m.cgroup.empty());
  EXPECT_NE(m.describe().find("no cgroup memory limit"), std::string::npos) << m.describe();
}

TEST(HostMemory, V1LimitMinusUsageNotCountingFileCache) {
  test::TempDir root;
  node(root, "9:name=systemd:/\n4:memory:/slurm/uid_0/job_7\n0::/\n");
  const fs::path job = root.path() / "sys/fs/cgroup/memory/slurm/uid_0/job_7";
  put(job / "memory.limit_in_bytes", std::to_string(450 * kMiB) + "\n");
  put(job / "memory.usage_in_bytes", std::to_string(150 * kMiB) + "\n");
  put(job / "memory.stat", "cache 1\ntotal_inactive_file " + std::to_string(50 * kMiB) + "\n");
  put(root.path() / "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  const HostMemory m = read_host_memory(root.path().string());
  EXPECT_EQ(m.available, 350 * kMiB);
  EXPECT_EQ(m.total, 450 * kMiB);
  EXPECT_EQ(m.cgroup, "v1 /slurm/uid_0/job_7");
  EXPECT_NE(m.describe().find("cgroup v1 /slurm/uid_0/job_7 limit 450.0 MiB (350.0 MiB free) applies"),
            std::string::npos)
      << m.describe();
}

TEST(HostMemory, V2MaxIsNoLimitButAParentLimitCounts) {
  test::TempDir root;
  node(root, "0::/kubepods/pod1/ctr\n");
  const fs::path cg = root.path() / "sys/fs/cgroup";
  put(cg / "cgroup.controllers", "cpu memory\n");
  put(cg / "kubepods/pod1/ctr/memory.max", "max\n");
  put(cg / "kubepods/pod1/ctr/memory.current", std::to_string(100 * kMiB) + "\n");
  put(cg / "kubepods/pod1/memory.max", std::to_string(1024 * kMiB) + "\n");
  put(cg / "kubepods/pod1/memory.current", std::to_string(300 * kMiB) + "\n");
  put(cg / "kubepods/memory.max", std::to_string(8192 * kMiB) + "\n");
  put(cg / "kubepods/memory.current", std::to_string(7900 * kMiB) + "\n");  // tightest: 292 MiB left
  const HostMemory m = read_host_memory(root.path().string());
  EXPECT_EQ(m.available, 292 * kMiB);
  EXPECT_EQ(m.cgroup, "v2 /kubepods");
  EXPECT_EQ(m.total, 8192 * kMiB);
}

TEST(HostMemory, HybridV2UnderUnifiedAndMissingFilesAreNoLimit) {
  test::TempDir root;
  node(root, "0::/job\n");
  put(root.path() / "sys/fs/cgroup/unified/job/memory.max", std::to_string(2048 * kMiB));
  const HostMemory m = read_host_memory(root.path().string());  // no memory.current: usage 0
  EXPECT_EQ(m.available, 2048 * kMiB);
  EXPECT_EQ(m.cgroup, "v2 /job");

  test::TempDir bare;
  node(bare, "4:memory:/gone\n");  // the cgroup's folder is not there: no limit known
  const HostMemory b = read_host_memory(bare.path().string());
  EXPECT_EQ(b.available, 40LL << 30);
  EXPECT_TRUE(b.cgroup.empty());
}

TEST(HostMemory, LimitAboveMemAvailableLeavesMemAvailable) {
  test::TempDir root;
  node(root, "4:memory:/big\n");
  put(root.path() / "sys/fs/cgroup/memory/big/memory.limit_in_bytes", std::to_string(100LL << 30));
  put(root.path() / "sys/fs/cgroup/memory/big/memory.usage_in_bytes", "0");
  const HostMemory m = read_host_memory(root.path().string());
  EXPECT_EQ(m.available, 40LL << 30);
  EXPECT_EQ(m.total, 64LL << 30);
  EXPECT_NE(m.describe().find("MemAvailable 40.00 GiB applies"), std::string::npos) << m.describe();
}

}  // namespace
