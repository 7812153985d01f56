#pragma once
// Free host memory as a scheduler sees it: the smaller of /proc/meminfo's MemAvailable and
// the headroom under the process's memory cgroup (Slurm --mem, a Kubernetes limit, any
// container), since /proc/meminfo shows the whole node.
#include <cstdint>
#include <string>

namespace imgpipe {

/// Host memory read now, in bytes.
struct HostMemory {
  int64_t available = 0;       ///< min(MemAvailable, cgroup headroom)
  int64_t total = 0;           ///< min(MemTotal, cgroup limit)
  int64_t mem_available = 0;   ///< /proc/meminfo's MemAvailable
  int64_t cgroup_limit = -1;   ///< the tightest cgroup limit on the way to the root; -1: none
  int64_t cgroup_headroom = -1;  ///< that cgroup's limit - usage (reclaimable file cache not counted as used)
  std::string cgroup;          ///< "v1 /path" or "v2 /path" of that cgroup; empty: none
  /// Which limit applies, for the log: "cgroup v1 /a/b limit 450 MiB (380 MiB free); ..."
  [[nodiscard]] std::string describe() const;
};

/// Reads host memory under `root` ("/" normally; a fake tree in tests): root/proc/meminfo,
/// root/proc/self/cgroup, and the cgroup files under root/sys/fs/cgroup (v1 memory
/// controller at memory/, v2 at the top or at unified/). Every ancestor cgroup's limit
/// counts; "max", a missing file or a cgroup path absent from the mount are no limit.
[[nodiscard]] HostMemory read_host_memory(const std::string& root = "/");

/// memory.host_budget (the decode queue and pinned staging) as used: at most an eighth of
/// the host memory available, so that a tight limit leaves the rest to the model.
[[nodiscard]] int64_t usable_host_budget(int64_t configured, const HostMemory& m);

}  // namespace imgpipe
