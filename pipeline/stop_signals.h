#pragma once
// Ctrl-C, kill and a closed terminal (SIGINT, SIGTERM, SIGHUP) stop a run cleanly instead
// of killing it: a watcher thread takes them, so no code runs in a signal handler.
#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include <signal.h>

namespace imgpipe {

class StopSignals {
 public:
  /// Blocks the three signals in the calling thread, and so in every thread it starts
  /// afterwards: create this before any other thread.
  StopSignals();
  /// Restores the signal mask.
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  /// The first signal received, 0 while none; a second one exits at once (128 + its number).
  [[nodiscard]] int signal() const { return signal_; }
  /// Called (on the watcher thread) when the first signal arrives, or at once if it already
  /// has; an empty function removes it.
  void on_stop(std::function<void()> f);

 private:
  void watch();
  sigset_t set_{}, old_{};
  std::atomic<int> signal_{0};
  std::atomic<bool> done_{false};
  std::mutex mu_;
  std::function<void()> on_stop_;
  std::thread watcher_;
};

/// "SIGINT", "SIGTERM", "SIGHUP" or the number.
[[nodiscard]] const char* signal_name(int sig);

}  // namespace imgpipe
