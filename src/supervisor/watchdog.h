// Watchdog: when a running session must end, and why, and when its output may be read. Two
// parts:
// - Watchdog, a pure decision object: the wall and idle deadlines, the output-rate ceiling
//   (kill: a verdict; throttle: how much may be read now and when reading may resume) and
//   the cgroup memory/pids events turned into a Verdict (an EndReason and how hard to kill).
//   Every call takes the time as an argument, so unit tests drive it without a kernel or a
//   clock.
// - WatchdogTimer, its wiring: one loop timer armed at the nearest deadline, re-armed lazily
//   when it fires early (activity only ever moves the idle deadline later), so output costs
//   no timer operations. Pausing and resuming the reads is the Session's (it owns the fds).
// Supervisor only; single-threaded (the event loop's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include "common/messages.h"
#include "common/vocabulary.h"
#include "supervisor/event_loop.h"

namespace mp::supervisor {

using FloodAction = common::FloodAction;

struct WatchdogLimits {
  std::chrono::seconds wall{0};  // from start to kill (timeout_wall); 0 = none
  std::chrono::seconds idle{0};  // without output or input (timeout_idle); 0 = none
  // The output-rate ceiling in bytes per second; 0 = none. What going over it does:
  // - kKill: more than rate * window bytes within one window kills at once (output_flood).
  //   Windows are fixed; one starts with the first output after the previous one ran out.
  // - kThrottle: a token bucket that holds rate * window bytes (the burst a session may print
  //   at full speed) and refills at `rate`. The session's output is read only while the bucket
  //   holds bytes; once it is empty, reading stops until it holds ResumeBytes() again. Over a
  //   long run the session prints `rate` bytes per second on average, and nothing is lost.
  uint64_t max_rate_bytes_per_second = 0;
  std::chrono::seconds rate_window{10};  // at least 1 s is used
  FloodAction on_flood = FloodAction::kThrottle;
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
  // against the rate ceiling (kKill: the window that `now` falls in, and a verdict when they
  // pass it; kThrottle: they are taken from the bucket, never a verdict).
  std::optional<Verdict> OnOutput(uint64_t bytes, Clock::time_point now);
  // A deadline that has passed at `now`: the wall deadline first, then the idle one (not
  // while output is paused: a session the supervisor does not read is not idle).
  [[nodiscard]] std::optional<Verdict> OnDeadline(Clock::time_point now) const;
  // The nearest deadline, or nullopt when the session has none.
  [[nodiscard]] std::optional<Clock::time_point> NextDeadline() const;

  // --- The throttle (kThrottle with a ceiling; otherwise reading is never limited) ---
  static constexpr uint64_t kUnlimited = UINT64_MAX;
  // How many bytes of output may be read at `now`: what the bucket holds, or kUnlimited.
  [[nodiscard]] uint64_t ReadBudget(Clock::time_point now) const;
  // What the bucket must hold again before reading resumes: one read chunk (64 KiB) or a
  // sixteenth of a second at the rate, whichever is more, at most the whole bucket. Keeps a
  // throttled session to at most about 16 pauses a second.
  [[nodiscard]] uint64_t ResumeBytes() const;
  struct Pause {
    Clock::time_point resume_at;  // when the bucket holds ResumeBytes() again
    bool new_episode;             // the first pause since the bucket was last full
  };
  // The budget of ReadBudget(now) has been read: output reading stops (and the idle deadline
  // with it) until `resume_at`. A throttle episode runs from its first pause until the bucket
  // is full again (the session printed below the ceiling for a while).
  Pause PauseOutput(Clock::time_point now);
  // Reading resumes at `now`; for the idle deadline this is activity.
  void ResumeOutput(Clock::time_point now);
  [[nodiscard]] bool output_paused() const { return paused_; }
  [[nodiscard]] uint64_t throttle_episodes() const { return episodes_; }
  // How long output has been paused in total, up to `now`.
  [[nodiscard]] Clock::duration ThrottledFor(Clock::time_point now) const;

  // The counters read from the leaf after its event file changed: an OOM kill (the kernel
  // is already killing the whole leaf, memory.oom.group=1) or a refused fork (pids.max).
  static std::optional<Verdict> OnCgroupEvent(CgroupEventSource source, uint64_t oom_kill_events,
                                              uint64_t pids_max_events);

 private:
  WatchdogLimits limits_;
  Clock::time_point start_;
  Clock::time_point last_activity_;
  Clock::time_point window_start_;  // kKill: the current window
  uint64_t window_bytes_ = 0;
  // kThrottle, as a virtual clock (GCRA): when the bucket is full again. Every byte read moves
  // it on by 1/rate s from max(itself, now); at `now` the bucket holds
  // (now + window - max(bucket_full_at_, now)) * rate bytes. Starts at `start`: full.
  Clock::time_point bucket_full_at_;
  bool paused_ = false;
  bool in_episode_ = false;
  uint64_t episodes_ = 0;
  Clock::time_point paused_at_;
  Clock::duration throttled_{0};
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
  [[nodiscard]] bool armed() const { return timer_ != 0; }

 private:
  void Fire();

  EventLoop& loop_;
  const Watchdog& dog_;
  VerdictFn on_verdict_;
  EventLoop::TimerId timer_ = 0;
};

}  // namespace mp::supervisor
