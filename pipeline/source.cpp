#include "source.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace imgpipe {
namespace {

bool wanted(const fs::path& p, const std::vector<std::string>& extensions) {
  std::string ext = p.extension().string();
  if (!ext.empty()) ext.erase(0, 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(extensions.begin(), extensions.end(), ext) != extensions.end();
}

}  // namespace

std::vector<std::string> list_inputs(const InputConfig& in) {
  std::vector<std::string> all;
  std::error_code ec;
  const fs::path root(in.path);
  if (fs::is_directory(root, ec)) {
    // Entries that merely look like images (a directory named x.jpg, a socket) are listed
    // too, so that the decoder names them as skipped instead of them silently vanishing.
    auto add = [&](const fs::directory_entry& e) {
      if (wanted(e.path(), in.extensions)) all.push_back(e.path().string());
    };
    const auto opts = fs::directory_options::skip_permission_denied;
    if (in.recursive) {
      for (auto it = fs::recursive_directory_iterator(root, opts, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec))
        add(*it);
    } else {
      for (auto it = fs::directory_iterator(root, opts, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
        add(*it);
    }
    if (ec) throw std::runtime_error("cannot list '" + in.path + "': " + ec.message());
    std::sort(all.begin(), all.end());
  } else if (fs::is_regular_file(root, ec)) {
    // A list file: one path per line, relative paths taken from the list's folder; blank
    // lines and '#' comments ignored; order kept as given. Spaces, tabs and CR around a
    // path are not part of it (so a name that begins or ends with a space cannot be listed).
    std::ifstream f(root);
    if (!f) throw std::runtime_error("cannot read list file '" + in.path + "'");
    const fs::path base = root.parent_path();
    for (std::string line; std::getline(f, line);) {
      const char* blank = " \t\r";
      line.erase(0, std::min(line.size(), line.find_first_not_of(blank)));
      line.erase(line.find_last_not_of(blank) + 1);
      if (line.empty() || line[0] == '#') continue;
      fs::path p(line);
      all.push_back((p.is_relative() ? base / p : p).lexically_normal().string());
    }
  } else {
    throw std::runtime_error("input.path '" + in.path + "' is neither a directory nor a list file");
  }
  if (in.shard_count == 1) return all;
  std::vector<std::string> mine;
  for (size_t i = size_t(in.shard_index); i < all.size(); i += size_t(in.shard_count)) mine.push_back(std::move(all[i]));
  return mine;
}

}  // namespace imgpipe
