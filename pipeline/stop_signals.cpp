#include "stop_signals.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace imgpipe {
namespace {

constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
std::atomic<int> g_signal{0};  // lock-free, so safe in a handler
int g_wake_fd = -1;

extern "C" void on_signal(int sig) {
  if (g_signal.exchange(sig) != 0) {  // the second one: exit now, as the user asked twice
    const char* msg = sig == SIGINT    ? "imgpipe: SIGINT again: exiting at once\n"
                      : sig == SIGTERM ? "imgpipe: SIGTERM again: exiting at once\n"
                                       : "imgpipe: SIGHUP again: exiting at once\n";
    (void)!::write(STDERR_FILENO, msg, std::strlen(msg));
    ::_exit(128 + sig);
  }
  const char c = char(sig);
  (void)!::write(g_wake_fd, &c, 1);
}

}  // namespace

StopSignals::StopSignals() {
  g_signal = 0;
  if (::pipe2(pipe_, O_CLOEXEC) != 0) return;  // then signals keep their default action
  g_wake_fd = pipe_[1];
  watcher_ = std::thread([this] { watch(); });
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 3; ++i) {
    if (sigaction(kSignals[i], nullptr, &old_[i]) != 0 || old_[i].sa_handler == SIG_IGN) continue;
    installed_[i] = sigaction(kSignals[i], &sa, nullptr) == 0;
  }
}

StopSignals::~StopSignals() {
  if (pipe_[1] < 0) return;
  for (int i = 0; i < 3; ++i)
    if (installed_[i]) sigaction(kSignals[i], &old_[i], nullptr);
  const char stop = 0;
  (void)!::write(pipe_[1], &stop, 1);
  watcher_.join();
  ::close(pipe_[0]);
  ::close(pipe_[1]);
}

int StopSignals::signal() const { return g_signal; }

void StopSignals::watch() {
  for (char c; ::read(pipe_[0], &c, 1) == 1 && c != 0;) {
    std::lock_guard<std::mutex> lock(mu_);
    if (on_stop_) on_stop_();
  }
}

void StopSignals::on_stop(std::function<void()> f) {
  std::lock_guard<std::mutex> lock(mu_);
  on_stop_ = std::move(f);
  if (on_stop_ && g_signal != 0) on_stop_();
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
