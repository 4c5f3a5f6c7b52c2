// EventLoop: the supervisor's single-threaded epoll loop. Owns nothing but
// the epoll fd, its timer wheel (one timerfd) and the signalfd; callers
// register fds with callbacks. Supervisor only; not thread-safe: every call
// happens on the loop's thread, callbacks included.
#pragma once

#include <signal.h>
#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::supervisor {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;  // EPOLLIN/OUT/PRI/HUP/ERR bits
  using TimerCallback = std::function<void()>;
  using SignalCallback = std::function<void(int signo)>;
  using TimerId = uint64_t;
  using Clock = std::chrono::steady_clock;

  static Result<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();

  // Watches `fd` (not owned) for `events`, level-triggered unless `events` has EPOLLET.
  // EPOLLHUP and EPOLLERR are always reported. A callback may Remove() any fd, its own
  // included, and Add() new ones; a removed fd's callback is not called again, even for an
  // event already returned by the same epoll_wait. Remove() an fd before closing it.
  // Add fails with EEXIST for an fd already watched; Modify with ENOENT for one that is not.
  Result<void> Add(int fd, uint32_t events, FdCallback callback);
  Result<void> Modify(int fd, uint32_t events);
  void Remove(int fd);

  // One-shot timers on the monotonic clock. Cancel of a fired or unknown id is a no-op.
  TimerId AddTimer(Clock::time_point when, TimerCallback callback);
  TimerId AddTimer(std::chrono::milliseconds after, TimerCallback callback) {
    return AddTimer(Clock::now() + after, std::move(callback));
  }
  void CancelTimer(TimerId id);

  // Blocks `signals` for the process and delivers them through a signalfd.
  // Call before any thread is created. A second call adds signals and replaces the callback.
  // The mask is left blocked when the loop is destroyed (a late SIGTERM must not kill a
  // supervisor that is shutting down).
  Result<void> HandleSignals(const std::vector<int>& signals, SignalCallback callback);

  // Runs until Stop() (from a callback, or before Run: then it returns at once); returns the
  // error that ended it, if any (epoll_wait failing other than EINTR). Stop() takes effect
  // after the running callback returns; events left in the batch are reported again by the
  // next Run (level-triggered). Run may be called again after it returns.
  Result<void> Run();
  void Stop() { stop_ = true; }

 private:
  // One registered fd. epoll_event.data.u64 carries (generation << 32 | fd) so that an event
  // still pending in the current epoll_wait batch for an fd that was removed (and maybe
  // re-added, or its number reused by a new fd) is recognised as stale and skipped.
  struct Watch {
    uint32_t generation = 0;
    // Held by shared_ptr so a callback can remove itself while it runs.
    std::shared_ptr<FdCallback> callback;
  };
  struct Timer {
    TimerId id = 0;
    TimerCallback callback;
  };

  EventLoop() = default;
  Result<void> AddInternal(int fd, uint32_t events, FdCallback callback);
  void ArmTimerFd();
  void FireTimers();
  void ReadSignals();

  UniqueFd epoll_;
  UniqueFd timerfd_;
  UniqueFd signalfd_;
  SignalCallback on_signal_;
  sigset_t signal_set_{};  // every signal routed to signalfd_ so far
  std::unordered_map<int, Watch> fds_;
  uint32_t next_generation_ = 1;
  // Due time -> timer; equal times fire in insertion order (multimap keeps it).
  std::multimap<Clock::time_point, Timer> timers_;
  std::unordered_map<TimerId, Clock::time_point> timer_index_;
  TimerId next_timer_ = 1;
  Clock::time_point armed_for_ = Clock::time_point::max();  // what timerfd_ is set to
  bool firing_timers_ = false;  // inside FireTimers: re-arm once at the end, not per change
  bool stop_ = false;
};

}  // namespace mp::supervisor
