#include "supervisor/watchdog.h"

#include <algorithm>

namespace mp::supervisor {

using wire::EndReason;

Watchdog::Watchdog(WatchdogLimits limits, Clock::time_point start)
    : limits_(limits), start_(start), last_activity_(start), window_start_(start) {}

void Watchdog::OnInput(Clock::time_point now) { last_activity_ = std::max(last_activity_, now); }

std::optional<Verdict> Watchdog::OnOutput(uint64_t bytes, Clock::time_point now) {
  if (bytes == 0) return std::nullopt;
  last_activity_ = std::max(last_activity_, now);
  if (limits_.max_rate_bytes_per_second == 0) return std::nullopt;
  const auto window = std::max(limits_.rate_window, std::chrono::seconds(1));
  // Fixed windows that start with the first output after the previous one ran out.
  if (now - window_start_ >= window) {
    window_start_ = now;
    window_bytes_ = 0;
  }
  window_bytes_ += bytes;
  const uint64_t allowed =
      limits_.max_rate_bytes_per_second * static_cast<uint64_t>(window.count());
  if (window_bytes_ > allowed) return Verdict{EndReason::kOutputFlood, KillMode::kImmediate};
  return std::nullopt;
}

std::optional<Verdict> Watchdog::OnDeadline(Clock::time_point now) const {
  if (limits_.wall.count() > 0 && now >= start_ + limits_.wall) {
    return Verdict{EndReason::kTimeoutWall, KillMode::kGraceful};
  }
  if (limits_.idle.count() > 0 && now >= last_activity_ + limits_.idle) {
    return Verdict{EndReason::kTimeoutIdle, KillMode::kGraceful};
  }
  return std::nullopt;
}

std::optional<Watchdog::Clock::time_point> Watchdog::NextDeadline() const {
  std::optional<Clock::time_point> next;
  if (limits_.wall.count() > 0) next = start_ + limits_.wall;
  if (limits_.idle.count() > 0) {
    const auto idle = last_activity_ + limits_.idle;
    next = next ? std::min(*next, idle) : idle;
  }
  return next;
}

std::optional<Verdict> Watchdog::OnCgroupEvent(CgroupEventSource source, uint64_t oom_kill_events,
                                               uint64_t pids_max_events) {
  if (source == CgroupEventSource::kMemory && oom_kill_events > 0) {
    return Verdict{EndReason::kOom, KillMode::kImmediate};
  }
  if (source == CgroupEventSource::kPids && pids_max_events > 0) {
    return Verdict{EndReason::kPidsLimit, KillMode::kImmediate};
  }
  return std::nullopt;
}

WatchdogTimer::WatchdogTimer(EventLoop& loop, const Watchdog& dog, VerdictFn on_verdict)
    : loop_(loop), dog_(dog), on_verdict_(std::move(on_verdict)) {}

void WatchdogTimer::Arm() {
  Cancel();
  const auto next = dog_.NextDeadline();
  if (!next) return;
  timer_ = loop_.AddTimer(*next, [this] { Fire(); });
}

void WatchdogTimer::Cancel() {
  if (timer_ != 0) loop_.CancelTimer(timer_);
  timer_ = 0;
}

void WatchdogTimer::Fire() {
  timer_ = 0;
  if (auto verdict = dog_.OnDeadline(Watchdog::Clock::now())) {
    on_verdict_(*verdict);  // may destroy nothing: the session ends later, from the loop
    return;
  }
  Arm();  // activity moved the idle deadline: wait for the new one
}

}  // namespace mp::supervisor
