// Watchdog: when a running session must end, and why. Two parts:
// - Watchdog, a pure decision object: the wall and idle deadlines, the output-rate ceiling
//   and the cgroup memory/pids events turned into a Verdict (an EndReason and how hard to
//   kill). Every call takes the time as an argument, so unit tests drive it without a kernel
//   or a clock.
// - WatchdogTimer, its wiring: one loop timer armed at the nearest deadline, re-armed lazily
//   when it fires early (activity only ever moves the idle deadline later), so output costs
//   no timer operations.
// Supervisor only; single-threaded (the event loop's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include "common/messages.h"
#include "supervisor/event_loop.h"

namespace mp::supervisor {

struct WatchdogLimits {
  std::chrono::seconds wall{0};  // from start to kill (timeout_wall); 0 = none
  std::chrono::seconds idle{0};  // without output or input (timeout_idle); 0 = none
  // More than rate * window bytes within one window kills at once (output_flood); 0 = none.
  uint64_t max_rate_bytes_per_second = 0;
  std::chrono::seconds rate_window{10};  // at least 1 s is used
};

enum class KillMode {
  kGraceful,   // SIGTERM to the session's init, then cgroup.kill after the grace period
  kImmediate,  // cgroup.kill now
};

struct Verdict {
  wire::EndReason reason;
  KillMode mode;
  bool operator==(const Verdict&) const = default;
};

// Which cgroup event file changed.
enum class CgroupEventSource { kMemory, kPids };

class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;

  Watchdog(WatchdogLimits limits, Clock::time_point start);

  // Input was written to the session: the idle deadline starts again.
  void OnInput(Clock::time_point now);
  // `bytes` (> 0) of output arrived: the idle deadline starts again, and the bytes count
  // against the rate window that `now` falls in.
  std::optional<Verdict> OnOutput(uint64_t bytes, Clock::time_point now);
  // A deadline that has passed at `now`: the wall deadline first, then the idle one.
  [[nodiscard]] std::optional<Verdict> OnDeadline(Clock::time_point now) const;
  // The nearest deadline, or nullopt when the session has none.
  [[nodiscard]] std::optional<Clock::time_point> NextDeadline() const;

  // The counters read from the leaf after its event file changed: an OOM kill (the kernel
  // is already killing the whole leaf, memory.oom.group=1) or a refused fork (pids.max).
  static std::optional<Verdict> OnCgroupEvent(CgroupEventSource source, uint64_t oom_kill_events,
                                              uint64_t pids_max_events);

 private:
  WatchdogLimits limits_;
  Clock::time_point start_;
  Clock::time_point last_activity_;
  Clock::time_point window_start_;
  uint64_t window_bytes_ = 0;
};

class WatchdogTimer {
 public:
  using VerdictFn = std::function<void(const Verdict&)>;
  // `dog` must outlive this object. `on_verdict` runs from the loop when a deadline passes.
  WatchdogTimer(EventLoop& loop, const Watchdog& dog, VerdictFn on_verdict);
  ~WatchdogTimer() { Cancel(); }
  WatchdogTimer(const WatchdogTimer&) = delete;
  WatchdogTimer& operator=(const WatchdogTimer&) = delete;

  // Arms the timer at the watchdog's nearest deadline (nothing when it has none).
  void Arm();
  void Cancel();

 private:
  void Fire();

  EventLoop& loop_;
  const Watchdog& dog_;
  VerdictFn on_verdict_;
  EventLoop::TimerId timer_ = 0;
};

}  // namespace mp::supervisor
