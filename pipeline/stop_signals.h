#pragma once
// Ctrl-C, kill and a closed terminal (SIGINT, SIGTERM, SIGHUP) stop a run cleanly instead
// of killing it. The handler only records the signal and writes a byte to a pipe; a
// watcher thread reads it and does the rest, outside the handler.
#include <functional>
#include <mutex>
#include <thread>

#include <signal.h>

namespace imgpipe {

class StopSignals {
 public:
  /// Installs the handlers (not for a signal the process ignores, e.g. SIGHUP under nohup).
  StopSignals();
  /// Restores the previous handlers.
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  /// The first signal received, 0 while none; a second one exits at once (128 + its number).
  [[nodiscard]] int signal() const;
  /// Called (on the watcher thread) when the first signal arrives, or at once if it already
  /// has; an empty function removes it.
  void on_stop(std::function<void()> f);

 private:
  void watch();
  struct sigaction old_[3] {};
  bool installed_[3] = {};
  int pipe_[2] = {-1, -1};
  std::mutex mu_;
  std::function<void()> on_stop_;
  std::thread watcher_;
};

/// "SIGINT", "SIGTERM", "SIGHUP" or "signal".
[[nodiscard]] const char* signal_name(int sig);

}  // namespace imgpipe
