#include "stop_signals.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace imgpipe {

StopSignals::StopSignals() {
  sigemptyset(&set_);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, s);
  pthread_sigmask(SIG_BLOCK, &set_, &old_);
  watcher_ = std::thread([this] { watch(); });
}

StopSignals::~StopSignals() {
  done_ = true;
  watcher_.join();
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

void StopSignals::watch() {
  const timespec poll{0, 50 * 1000 * 1000};  // how soon the destructor's join returns
  while (!done_) {
    const int sig = sigtimedwait(&set_, nullptr, &poll);
    if (sig <= 0) continue;
    if (signal_ != 0) {
      std::fprintf(stderr, "imgpipe: %s again: exiting at once\n", signal_name(sig));
      std::_Exit(128 + sig);
    }
    signal_ = sig;
    std::lock_guard<std::mutex> lock(mu_);
    if (on_stop_) on_stop_();
  }
}

void StopSignals::on_stop(std::function<void()> f) {
  std::lock_guard<std::mutex> lock(mu_);
  on_stop_ = std::move(f);
  if (on_stop_ && signal_ != 0) on_stop_();
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "signal";
  }
}

}  // namespace imgpipe
