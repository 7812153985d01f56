// imgpipe: a folder of images in, preprocessed tensors (and predictions) out.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "config.h"
#include "merge.h"
#include "parallel.h"
#include "run.h"

namespace imgpipe {
const char* version();
}

int main(int argc, char** argv) {
  using namespace imgpipe;
  infer::restart_with_short_openmp_spin(argv);  // parallel.h says why
  CLI::App app{
      "imgpipe: streams a folder of images through decode, preprocessing and (optionally) an ONNX model.\n"
      "Exit codes: 0 success (corrupt images skipped and listed in report.json), 1 runtime failure\n"
      "(completed shards kept; rerun to resume), 2 bad config or usage, 3 an image failed to decode\n"
      "under decode.on_error: fail, 4 out of device memory at the smallest batch and precision,\n"
      "129/130/143 stopped by SIGHUP/SIGINT/SIGTERM (complete shards kept; rerun to resume)."};
  std::string config_file;
  std::vector<std::string> overrides;
  std::string device;
  bool dry_run = false, quiet = false;
  auto* config_opt = app.add_option("-c,--config", config_file, "YAML config file")->check(CLI::ExistingFile);
  app.add_option("--set", overrides, "Override a config key: --set batch.max=64 (repeatable)")->take_all();
  // Checked with the config (same message as a bad `device:` key).
  app.add_option("--device", device, "auto, cpu, cuda or cuda:N (same as --set device=...)");
  app.add_flag("--dry-run", dry_run, "Validate, print the resolved config and plan, and exit");
  app.add_flag("-q,--quiet", quiet, "No progress and no informational lines (errors still shown)");
  std::string merge_dir;
  auto* merge = app.add_subcommand("merge", "Merge the parts of a sharded output folder (input.shard.count > 1): "
                                            "merged predictions, index and report");
  merge->add_option("dir", merge_dir, "The output folder the parts share")->required()->check(CLI::ExistingDirectory);
  app.set_version_flag("--version", std::string("imgpipe ") + version());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitConfig;
  }
  if (*merge) {
    try {
      return merge_parts(merge_dir, stderr);
    } catch (const std::exception& e) {  // an unreadable part file, a full disk
      std::fprintf(stderr, "imgpipe: error: merge: %s\n", e.what());
      return kExitRuntime;
    }
  }
  if (!*config_opt) {
    std::fprintf(stderr, "imgpipe: error: --config is required\nRun with --help for more information.\n");
    return kExitConfig;
  }
  if (!device.empty()) overrides.push_back("device=" + device);
  Config cfg;
  try {
    cfg = load_config(config_file, overrides);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "imgpipe: error: %s\n", e.what());
    return kExitConfig;
  }
  RunOptions opt;
  opt.dry_run = dry_run;
  opt.quiet = quiet;
  return run(cfg, opt, stderr);
}
