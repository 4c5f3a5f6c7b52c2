#include "supervisor/watchdog.h"

#include <algorithm>
#include <cmath>

namespace mp::supervisor {
namespace {

using wire::EndReason;
using Nanos = std::chrono::nanoseconds;

constexpr uint64_t kMinResumeBytes = uint64_t{64} * 1024;  // one read of the session
constexpr uint64_t kMaxPausesPerSecond = 16;

std::chrono::seconds WindowOf(const WatchdogLimits& l) {
  return std::max(l.rate_window, std::chrono::seconds(1));
}

bool Throttles(const WatchdogLimits& l) {
  return l.max_rate_bytes_per_second > 0 && l.on_flood == FloodAction::kThrottle;
}

// The time `bytes` take at `rate` bytes per second, rounded up to the nanosecond. long double
// holds rate * window (at most 2^30 * 3600) exactly; the cap (about 31 years) only matters
// for absurd inputs.
Nanos TimeOf(uint64_t bytes, uint64_t rate) {
  const long double ns = std::ceil(static_cast<long double>(bytes) * 1e9L / rate);
  return Nanos(static_cast<int64_t>(std::min(ns, 1e18L)));
}

}  // namespace

Watchdog::Watchdog(WatchdogLimits limits, Clock::time_point start)
    : limits_(limits),
      start_(start),
      last_activity_(start),
      window_start_(start),
      bucket_full_at_(start) {}

void Watchdog::OnInput(Clock::time_point now) { last_activity_ = std::max(last_activity_, now); }

std::optional<Verdict> Watchdog::OnOutput(uint64_t bytes, Clock::time_point now) {
  if (bytes == 0) return std::nullopt;
  last_activity_ = std::max(last_activity_, now);
  if (limits_.max_rate_bytes_per_second == 0) return std::nullopt;
  if (limits_.on_flood == FloodAction::kThrottle) {
    if (bucket_full_at_ <= now) in_episode_ = false;  // the bucket refilled: an episode ended
    bucket_full_at_ =
        std::max(bucket_full_at_, now) + TimeOf(bytes, limits_.max_rate_bytes_per_second);
    return std::nullopt;
  }
  const auto window = WindowOf(limits_);
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
  if (limits_.idle.count() > 0 && !paused_ && now >= last_activity_ + limits_.idle) {
    return Verdict{EndReason::kTimeoutIdle, KillMode::kGraceful};
  }
  return std::nullopt;
}

std::optional<Watchdog::Clock::time_point> Watchdog::NextDeadline() const {
  std::optional<Clock::time_point> next;
  if (limits_.wall.count() > 0) next = start_ + limits_.wall;
  if (limits_.idle.count() > 0 && !paused_) {
    const auto idle = last_activity_ + limits_.idle;
    next = next ? std::min(*next, idle) : idle;
  }
  return next;
}

uint64_t Watchdog::ReadBudget(Clock::time_point now) const {
  if (!Throttles(limits_)) return kUnlimited;
  const Nanos window = WindowOf(limits_);
  const Nanos ahead = std::max(bucket_full_at_, now) - now;  // how far past its rate
  if (ahead >= window) return 0;
  const long double bytes =
      static_cast<long double>((window - ahead).count()) * limits_.max_rate_bytes_per_second / 1e9L;
  return static_cast<uint64_t>(bytes);  // floor: never more than the bucket holds
}

uint64_t Watchdog::ResumeBytes() const {
  if (!Throttles(limits_)) return 0;
  const uint64_t rate = limits_.max_rate_bytes_per_second;
  const uint64_t bucket = rate * static_cast<uint64_t>(WindowOf(limits_).count());
  return std::min(bucket, std::max(kMinResumeBytes, rate / kMaxPausesPerSecond));
}

Watchdog::Pause Watchdog::PauseOutput(Clock::time_point now) {
  if (!paused_) {
    paused_ = true;
    paused_at_ = now;
  }
  const bool new_episode = !in_episode_;
  if (new_episode) {
    in_episode_ = true;
    ++episodes_;
  }
  Clock::time_point resume_at = now;
  if (Throttles(limits_)) {
    // The bucket holds ResumeBytes() at bucket_full_at_ - window + ResumeBytes() / rate.
    resume_at = std::max(now, bucket_full_at_ - WindowOf(limits_) +
                                  TimeOf(ResumeBytes(), limits_.max_rate_bytes_per_second));
  }
  return Pause{resume_at, new_episode};
}

void Watchdog::ResumeOutput(Clock::time_point now) {
  if (!paused_) return;
  paused_ = false;
  throttled_ += std::max(now, paused_at_) - paused_at_;
  last_activity_ = std::max(last_activity_, now);
}

Watchdog::Clock::duration Watchdog::ThrottledFor(Clock::time_point now) const {
  if (!paused_) return throttled_;
  return throttled_ + (std::max(now, paused_at_) - paused_at_);
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
