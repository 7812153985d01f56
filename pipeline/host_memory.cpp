#include "host_memory.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config.h"

namespace fs = std::filesystem;

namespace imgpipe {
namespace {

/// A number from a one-value cgroup file; -1 when missing, "max" or unlimited.
int64_t read_value(const fs::path& p) {
  std::ifstream f(p);
  std::string v;
  if (!(f >> v) || v == "max") return -1;
  try {
    const long long n = std::stoll(v);
    return n >= (int64_t(1) << 60) ? -1 : int64_t(n);  // v1 writes "no limit" as ~2^63
  } catch (const std::exception&) {
    return -1;
  }
}

/// A key of memory.stat (file cache the kernel reclaims before it kills: not counted as used).
int64_t read_stat(const fs::path& p, const std::string& key) {
  std::ifstream f(p);
  std::string k;
  int64_t v = 0;
  while (f >> k >> v)
    if (k == key) return v;
  return 0;
}

}  // namespace

std::string HostMemory::describe() const {
  const std::string avail = "MemAvailable " + format_bytes(mem_available);
  if (cgroup.empty()) return "no cgroup memory limit; " + avail + " applies";
  const std::string cg = "cgroup " + cgroup + " limit " + format_bytes(cgroup_limit) + " (" +
                         format_bytes(cgroup_headroom) + " free)";
  return cgroup_headroom < mem_available ? cg + " applies; " + avail : avail + " applies; " + cg;
}

int64_t usable_host_budget(int64_t configured, const HostMemory& m) {
  return std::min(configured, std::max<int64_t>(16 << 20, m.available / 8));
}

HostMemory read_host_memory(const std::string& root) {
  const fs::path r(root);
  HostMemory m;
  {
    std::ifstream f(r / "proc/meminfo");
    std::string key, unit;
    int64_t kb = 0;
    while (f >> key >> kb >> unit) {
      if (key == "MemAvailable:") m.mem_available = kb * 1024;
      if (key == "MemTotal:") m.total = kb * 1024;
    }
  }
  m.available = m.mem_available;
  // /proc/self/cgroup: "ID:controllers:/path"; v1's memory line wins over v2's "0::".
  std::ifstream f(r / "proc/self/cgroup");
  std::string v1, v2;
  for (std::string line; std::getline(f, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    std::istringstream list(ctl);
    for (std::string c; std::getline(list, c, ',');)
      if (c == "memory") v1 = path;
    if (line.compare(0, a, "0") == 0 && ctl.empty()) v2 = path;
  }
  struct Kind {
    fs::path mount;
    std::string limit, usage, cache, name;
  };
  Kind kind;
  std::string path;
  if (!v1.empty()) {
    kind = {r / "sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file", "v1"};
    path = v1;
  } else if (!v2.empty()) {
    const bool unified = fs::exists(r / "sys/fs/cgroup/cgroup.controllers");
    kind = {r / (unified ? "sys/fs/cgroup" : "sys/fs/cgroup/unified"), "memory.max", "memory.current", "inactive_file",
            "v2"};
    path = v2;
  } else {
    return m;
  }
  // The leaf and each ancestor up to the mount: the tightest headroom is the limit.
  for (fs::path p = fs::path(path).relative_path();; p = p.parent_path()) {
    const fs::path dir = kind.mount / p;
    const int64_t limit = read_value(dir / kind.limit);
    if (limit >= 0) {
      const int64_t usage = std::max<int64_t>(0, read_value(dir / kind.usage)) -
                            read_stat(dir / "memory.stat", kind.cache);
      const int64_t headroom = std::max<int64_t>(0, limit - std::max<int64_t>(0, usage));
      if (m.cgroup.empty() || headroom < m.cgroup_headroom) {
        m.cgroup_headroom = headroom;
        m.cgroup_limit = limit;
        m.cgroup = kind.name + " /" + p.generic_string();
      }
    }
    if (p.empty()) break;
  }
  if (!m.cgroup.empty()) {
    m.available = std::min(m.available, m.cgroup_headroom);
    m.total = std::min(m.total, m.cgroup_limit);
  }
  return m;
}

}  // namespace imgpipe
