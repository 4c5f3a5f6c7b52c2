// Watchdog: deadlines, the output-rate ceiling and cgroup events as verdicts, driven by an
// injected clock; WatchdogTimer on a real EventLoop.
#include "supervisor/watchdog.h"

#include <gtest/gtest.h>

namespace mp::supervisor {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using wire::EndReason;
using Clock = Watchdog::Clock;

const Clock::time_point kT0 = Clock::time_point() + std::chrono::hours(1);

WatchdogLimits Limits(int wall, int idle, uint64_t rate = 0, int window = 10) {
  WatchdogLimits l;
  l.wall = seconds(wall);
  l.idle = seconds(idle);
  l.max_rate_bytes_per_second = rate;
  l.rate_window = seconds(window);
  return l;
}

TEST(WatchdogTest, WallDeadlineEndsGracefullyAtItsTimeAndNotBefore) {
  Watchdog dog(Limits(60, 0), kT0);
  ASSERT_EQ(dog.NextDeadline(), kT0 + seconds(60));
  EXPECT_EQ(dog.OnDeadline(kT0 + seconds(60) - milliseconds(1)), std::nullopt);
  EXPECT_EQ(dog.OnDeadline(kT0 + seconds(60)),
            (Verdict{EndReason::kTimeoutWall, KillMode::kGraceful}));
}

TEST(WatchdogTest, OutputAndInputPushTheIdleDeadlineButNotTheWallDeadline) {
  Watchdog dog(Limits(100, 10), kT0);
  EXPECT_EQ(dog.NextDeadline(), kT0 + seconds(10));
  EXPECT_EQ(dog.OnOutput(5, kT0 + seconds(8)), std::nullopt);
  EXPECT_EQ(dog.NextDeadline(), kT0 + seconds(18));
  EXPECT_EQ(dog.OnDeadline(kT0 + seconds(10)), std::nullopt);
  dog.OnInput(kT0 + seconds(15));
  EXPECT_EQ(dog.NextDeadline(), kT0 + seconds(25));
  EXPECT_EQ(dog.OnDeadline(kT0 + seconds(25)),
            (Verdict{EndReason::kTimeoutIdle, KillMode::kGraceful}));
  // Activity keeps idle away, never the wall deadline.
  for (int t = 20; t < 100; t += 5) dog.OnInput(kT0 + seconds(t));
  EXPECT_EQ(dog.NextDeadline(), kT0 + seconds(100));
  EXPECT_EQ(dog.OnDeadline(kT0 + seconds(100)),
            (Verdict{EndReason::kTimeoutWall, KillMode::kGraceful}));
}

TEST(WatchdogTest, EmptyOutputIsNoActivity) {
  Watchdog dog(Limits(0, 10), kT0);
  EXPECT_EQ(dog.OnOutput(0, kT0 + seconds(9)), std::nullopt);
  EXPECT_EQ(dog.NextDeadline(), kT0 + seconds(10));
}

TEST(WatchdogTest, NoDeadlinesMeansNoTimer) {
  Watchdog dog(Limits(0, 0), kT0);
  EXPECT_EQ(dog.NextDeadline(), std::nullopt);
  EXPECT_EQ(dog.OnDeadline(kT0 + std::chrono::hours(1000)), std::nullopt);
}

TEST(WatchdogTest, RateCeilingKillsAtOnceJustPastRateTimesWindow) {
  Watchdog dog(Limits(0, 0, 1000, 2), kT0);  // 2,000 bytes per 2 s window
  EXPECT_EQ(dog.OnOutput(1500, kT0), std::nullopt);
  EXPECT_EQ(dog.OnOutput(500, kT0 + milliseconds(1999)), std::nullopt);  // exactly 2,000
  EXPECT_EQ(dog.OnOutput(1, kT0 + milliseconds(1999)),
            (Verdict{EndReason::kOutputFlood, KillMode::kImmediate}));
}

TEST(WatchdogTest, RateWindowStartsAgainAfterItRunsOut) {
  Watchdog dog(Limits(0, 0, 1000, 2), kT0);
  EXPECT_EQ(dog.OnOutput(2000, kT0), std::nullopt);
  // A new window: the earlier bytes no longer count.
  EXPECT_EQ(dog.OnOutput(2000, kT0 + seconds(2)), std::nullopt);
  EXPECT_EQ(dog.OnOutput(1, kT0 + seconds(3)),
            (Verdict{EndReason::kOutputFlood, KillMode::kImmediate}));
}

TEST(WatchdogTest, ZeroRateIsNoCeilingAndAZeroWindowCountsAsOneSecond) {
  Watchdog unlimited(Limits(0, 0, 0, 10), kT0);
  EXPECT_EQ(unlimited.OnOutput(uint64_t{1} << 40, kT0), std::nullopt);
  Watchdog one_second(Limits(0, 0, 100, 0), kT0);
  EXPECT_EQ(one_second.OnOutput(100, kT0), std::nullopt);
  EXPECT_EQ(one_second.OnOutput(1, kT0 + milliseconds(999)),
            (Verdict{EndReason::kOutputFlood, KillMode::kImmediate}));
}

TEST(WatchdogTest, CgroupEventsAreJudgedByTheirOwnCounter) {
  EXPECT_EQ(Watchdog::OnCgroupEvent(CgroupEventSource::kMemory, 1, 0),
            (Verdict{EndReason::kOom, KillMode::kImmediate}));
  EXPECT_EQ(Watchdog::OnCgroupEvent(CgroupEventSource::kPids, 0, 3),
            (Verdict{EndReason::kPidsLimit, KillMode::kImmediate}));
  // memory.events changes for "high" or "max" too: only an OOM kill ends the session.
  EXPECT_EQ(Watchdog::OnCgroupEvent(CgroupEventSource::kMemory, 0, 3), std::nullopt);
  EXPECT_EQ(Watchdog::OnCgroupEvent(CgroupEventSource::kPids, 2, 0), std::nullopt);
}

TEST(WatchdogTimerTest, FiresAtTheIdleDeadlineAfterActivityMovedIt) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop) << loop.error().ToString();
  const auto start = Clock::now();
  WatchdogLimits l = Limits(0, 0);
  l.idle = seconds(1);
  Watchdog dog(l, start);
  std::optional<Verdict> got;
  Clock::time_point fired_at;
  WatchdogTimer timer(**loop, dog, [&](const Verdict& v) {
    got = v;
    fired_at = Clock::now();
    (*loop)->Stop();
  });
  timer.Arm();
  // Activity at 600 ms moves the deadline to 1.6 s: the first firing (1 s) must re-arm.
  (*loop)->AddTimer(milliseconds(600), [&] { dog.OnInput(Clock::now()); });
  (*loop)->AddTimer(seconds(10), [&] { (*loop)->Stop(); });  // hang guard
  ASSERT_TRUE((*loop)->Run());
  ASSERT_TRUE(got.has_value()) << "the watchdog never fired";
  EXPECT_EQ(*got, (Verdict{EndReason::kTimeoutIdle, KillMode::kGraceful}));
  EXPECT_GE(fired_at - start, milliseconds(1600));
}

TEST(WatchdogTimerTest, CancelledTimerNeverFires) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop) << loop.error().ToString();
  bool fired = false;
  {
    Watchdog soon(Limits(1, 0), Clock::now() - seconds(2));  // already due
    WatchdogTimer timer(**loop, soon, [&](const Verdict&) { fired = true; });
    timer.Arm();
    timer.Cancel();
  }
  (*loop)->AddTimer(milliseconds(50), [&] { (*loop)->Stop(); });
  ASSERT_TRUE((*loop)->Run());
  EXPECT_FALSE(fired);
}

}  // namespace
}  // namespace mp::supervisor
