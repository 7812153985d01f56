#pragma once
// The whole job: list, decode, preprocess, batch, write, report.
#include <cstdio>

#include "config.h"

namespace imgpipe {

/// Process exit codes (documented in the README).
enum ExitCode : int {
  kExitOk = 0,           ///< every image written (corrupt ones skipped under on_error: skip)
  kExitRuntime = 1,      ///< I/O or device failure; completed shards are kept and resumable
  kExitConfig = 2,       ///< bad config, bad command line, missing input
  kExitBadImage = 3,     ///< an image could not be decoded and decode.on_error is fail
  kExitOutOfMemory = 4,  ///< not even the smallest batch at the lowest precision fits
  // Stopped by a signal (128 + its number): complete shards and the report are written.
  kExitHangup = 129,     ///< SIGHUP (the terminal closed)
  kExitInterrupt = 130,  ///< SIGINT (Ctrl-C)
  kExitTerminate = 143,  ///< SIGTERM (kill)
};

struct RunOptions {
  bool quiet = false;    ///< no progress and no informational lines
  bool dry_run = false;  ///< validate, print the resolved config and plan, touch nothing
};

/// Runs the job described by `cfg`, logging to `log`. Never throws; returns an ExitCode.
[[nodiscard]] int run(const Config& cfg, const RunOptions& opt, FILE* log);

}  // namespace imgpipe
