#include "supervisor/event_loop.h"

#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/log.h"
#include "common/scope_guard.h"

namespace mp::supervisor {
namespace {

uint64_t Token(uint32_t generation, int fd) {
  return (static_cast<uint64_t>(generation) << 32) | static_cast<uint32_t>(fd);
}

}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epoll_) return ErrnoError("epoll_create1(EPOLL_CLOEXEC)");
  // steady_clock is CLOCK_MONOTONIC on Linux (libstdc++), so its time points can be handed to
  // the timerfd as absolute times.
  loop->timerfd_.Reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!loop->timerfd_) return ErrnoError("timerfd_create(CLOCK_MONOTONIC)");
  EventLoop* self = loop.get();
  MP_RETURN_IF_ERROR(
      loop->AddInternal(loop->timerfd_.get(), EPOLLIN, [self](uint32_t) { self->FireTimers(); }));
  return loop;
}

EventLoop::~EventLoop() = default;

Result<void> EventLoop::Add(int fd, uint32_t events, FdCallback callback) {
  return AddInternal(fd, events, std::move(callback));
}

Result<void> EventLoop::AddInternal(int fd, uint32_t events, FdCallback callback) {
  const std::string what = "epoll_ctl(ADD, fd " + std::to_string(fd) + ")";
  if (fd < 0) return ErrnoError(EBADF, what);
  if (fds_.contains(fd)) return ErrnoError(EEXIST, what + ": already watched");
  uint32_t generation = next_generation_++;
  if (generation == 0) generation = next_generation_++;  // after 2^32 adds; 0 stays unused
  struct epoll_event ev {};
  ev.events = events;
  ev.data.u64 = Token(generation, fd);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return ErrnoError(what);
  fds_[fd] = Watch{generation, std::make_shared<FdCallback>(std::move(callback))};
  return Ok();
}

Result<void> EventLoop::Modify(int fd, uint32_t events) {
  const std::string what = "epoll_ctl(MOD, fd " + std::to_string(fd) + ")";
  const auto it = fds_.find(fd);
  if (it == fds_.end()) return ErrnoError(ENOENT, what + ": not watched");
  struct epoll_event ev {};
  ev.events = events;
  ev.data.u64 = Token(it->second.generation, fd);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) return ErrnoError(what);
  return Ok();
}

void EventLoop::Remove(int fd) {
  const auto it = fds_.find(fd);
  if (it == fds_.end()) return;
  // Fails only if the caller already closed `fd` (EBADF); the registration then went away with
  // the last reference to the file, or will be ignored by its stale generation.
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  // A running callback keeps its own shared_ptr copy (see Run), so erasing here is safe.
  fds_.erase(it);
}

EventLoop::TimerId EventLoop::AddTimer(Clock::time_point when, TimerCallback callback) {
  const TimerId id = next_timer_++;
  timers_.emplace(when, Timer{id, std::move(callback)});
  timer_index_.emplace(id, when);
  if (!firing_timers_ && when < armed_for_) ArmTimerFd();
  return id;
}

void EventLoop::CancelTimer(TimerId id) {
  const auto idx = timer_index_.find(id);
  if (idx == timer_index_.end()) return;
  const Clock::time_point when = idx->second;
  timer_index_.erase(idx);
  auto [first, last] = timers_.equal_range(when);
  for (auto it = first; it != last; ++it) {
    if (it->second.id == id) {
      timers_.erase(it);
      break;
    }
  }
  // Only a cancelled earliest timer changes what the timerfd should say; leaving it armed would
  // merely cost one spurious wake-up, but an idle loop should stay idle.
  if (!firing_timers_ && when == armed_for_) ArmTimerFd();
}

void EventLoop::ArmTimerFd() {
  const Clock::time_point target =
      timers_.empty() ? Clock::time_point::max() : timers_.begin()->first;
  if (target == armed_for_) return;
  struct itimerspec spec {};  // all zero: disarm
  if (target != Clock::time_point::max()) {
    int64_t ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(target.time_since_epoch()).count();
    // A zero it_value would disarm; a time in the past fires at once, which is what we want.
    if (ns <= 0) ns = 1;
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  if (::timerfd_settime(timerfd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr) != 0) {
    // Only EINVAL/EBADF are possible here, i.e. a bug; timers would stall, so say so loudly.
    common::Log(common::LogLevel::kError, "component=event_loop op=timerfd_settime", errno);
    return;
  }
  armed_for_ = target;
}

void EventLoop::FireTimers() {
  uint64_t expirations = 0;
  // EAGAIN when a callback earlier in this batch re-armed the timerfd: it then holds a future
  // time again and armed_for_ is still right.
  if (::read(timerfd_.get(), &expirations, sizeof expirations) ==
      static_cast<ssize_t>(sizeof expirations)) {
    armed_for_ = Clock::time_point::max();  // a one-shot timerfd disarms itself when it expires
  }
  firing_timers_ = true;
  ScopeGuard rearm([this] {
    firing_timers_ = false;
    ArmTimerFd();
  });
  // Only timers already due when we started: one that a callback adds for "now" waits for the
  // next round, so a self-re-arming zero-delay timer cannot starve the fds.
  const Clock::time_point now = Clock::now();
  while (!stop_ && !timers_.empty() && timers_.begin()->first <= now) {
    const auto it = timers_.begin();
    Timer timer = std::move(it->second);
    timer_index_.erase(timer.id);
    timers_.erase(it);
    timer.callback();  // may add or cancel timers: the map is re-read each iteration
  }
}

Result<void> EventLoop::HandleSignals(const std::vector<int>& signals, SignalCallback callback) {
  sigset_t add;
  sigemptyset(&add);
  for (int signo : signals) {
    if (signo == SIGKILL || signo == SIGSTOP || sigaddset(&add, signo) != 0) {
      return ErrnoError(EINVAL,
                        "HandleSignals: signal " + std::to_string(signo) + " cannot be blocked");
    }
  }
  sigset_t all = signal_set_;
  sigorset(&all, &all, &add);
  // The signals must be blocked, or they would still be delivered the ordinary way (and kill
  // us, for SIGTERM) instead of being queued for the signalfd.
  if (::sigprocmask(SIG_BLOCK, &add, nullptr) != 0) return ErrnoError("sigprocmask(SIG_BLOCK)");
  if (signalfd_) {
    // An existing signalfd takes the new mask in place; the flags argument is ignored then.
    if (::signalfd(signalfd_.get(), &all, 0) < 0) return ErrnoError("signalfd(update mask)");
  } else {
    UniqueFd fd(::signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd) return ErrnoError("signalfd");
    MP_RETURN_IF_ERROR(AddInternal(fd.get(), EPOLLIN, [this](uint32_t) { ReadSignals(); }));
    signalfd_ = std::move(fd);
  }
  signal_set_ = all;
  on_signal_ = std::move(callback);
  return Ok();
}

void EventLoop::ReadSignals() {
  for (;;) {
    struct signalfd_siginfo info {};
    const ssize_t n = ::read(signalfd_.get(), &info, sizeof info);
    if (n != static_cast<ssize_t>(sizeof info)) {
      if (n < 0 && errno == EINTR) continue;
      return;  // EAGAIN: nothing more queued
    }
    // A copy: the callback may call HandleSignals, which replaces on_signal_.
    SignalCallback callback = on_signal_;
    if (callback) callback(static_cast<int>(info.ssi_signo));
    if (stop_) return;  // the rest stays queued in the signalfd for the next Run
  }
}

Result<void> EventLoop::Run() {
  std::array<struct epoll_event, 64> events;
  while (!stop_) {
    const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;  // a signal handler ran (one not routed to the signalfd)
      const Error error = ErrnoError("epoll_wait");
      stop_ = false;
      return error;
    }
    for (int i = 0; i < n && !stop_; ++i) {
      const uint64_t token = events[i].data.u64;
      const int fd = static_cast<int>(token & 0xffffffffu);
      const auto it = fds_.find(fd);
      // Removed (and perhaps re-added, or the number reused) by an earlier callback of this
      // batch: the event belongs to a registration that no longer exists.
      if (it == fds_.end() || Token(it->second.generation, fd) != token) continue;
      const std::shared_ptr<FdCallback> callback = it->second.callback;
      (*callback)(events[i].events);
    }
  }
  stop_ = false;
  return Ok();
}

}  // namespace mp::supervisor
