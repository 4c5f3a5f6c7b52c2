// Watchdog: deadlines, the output-rate ceiling (kill: a verdict; throttle: read budgets and
// pauses) and cgroup events as verdicts, driven by an injected clock; WatchdogTimer on a real
// EventLoop.
#include "supervisor/watchdog.h"

#include <gtest/gtest.h>

namespace mp::supervisor {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using wire::EndReason;
using Clock = Watchdog::Clock;

const Clock::time_point kT0 = Clock::time_point() + std::chrono::hours(1);

// The rate tests written before the throttle existed use the kill action; Throttle() below
// gives the default one.
WatchdogLimits Limits(int wall, int idle, uint64_t rate = 0, int window = 10,
                      FloodAction on_flood = FloodAction::kKill) {
  WatchdogLimits l;
  l.wall = seconds(wall);
  l.idle = seconds(idle);
  l.max_rate_bytes_per_second = rate;
  l.rate_window = seconds(window);
  l.on_flood = on_flood;
  return l;
}

WatchdogLimits Throttle(uint64_t rate, int window, int wall = 0, int idle = 0) {
  return Limits(wall, idle, rate, window, FloodAction::kThrottle);
}

constexpr uint64_t kMiB = uint64_t{1} << 20;

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

TEST(WatchdogTest, ThrottleIsTheDefaultAction) {
  EXPECT_EQ(WatchdogLimits{}.on_flood, FloodAction::kThrottle);
}

TEST(WatchdogTest, KillModeAndNoCeilingNeverLimitReads) {
  Watchdog kill(Limits(0, 0, 1000, 2, FloodAction::kKill), kT0);
  EXPECT_EQ(kill.ReadBudget(kT0), Watchdog::kUnlimited);
  EXPECT_EQ(kill.ResumeBytes(), 0u);
  Watchdog none(Throttle(0, 10), kT0);
  EXPECT_EQ(none.OnOutput(uint64_t{1} << 40, kT0), std::nullopt);
  EXPECT_EQ(none.ReadBudget(kT0), Watchdog::kUnlimited);
}

TEST(WatchdogTest, ThrottleNeverKillsAndBudgetsABurstOfRateTimesWindow) {
  Watchdog dog(Throttle(1000, 2), kT0);  // a bucket of 2,000 bytes, refilled at 1,000 B/s
  EXPECT_EQ(dog.ReadBudget(kT0), 2000u);
  EXPECT_EQ(dog.OnOutput(1500, kT0), std::nullopt);
  EXPECT_EQ(dog.ReadBudget(kT0), 500u);
  EXPECT_EQ(dog.OnOutput(500, kT0), std::nullopt);
  EXPECT_EQ(dog.ReadBudget(kT0), 0u);
  // Where the kill mode would end the session, the throttle only finds nothing to read.
  EXPECT_EQ(dog.OnOutput(1, kT0), std::nullopt);
  EXPECT_EQ(dog.ReadBudget(kT0 + milliseconds(1)), 0u);  // the extra byte is owed first
  EXPECT_EQ(dog.ReadBudget(kT0 + milliseconds(501)), 500u);
  // It refills at the rate and holds no more than the burst, however long it waits.
  EXPECT_EQ(dog.ReadBudget(kT0 + std::chrono::hours(5)), 2000u);
}

TEST(WatchdogTest, ThrottleBudgetIsExactAtTheLargestCeiling) {
  Watchdog dog(Throttle(uint64_t{1} << 30, 3600), kT0);
  EXPECT_EQ(dog.ReadBudget(kT0), (uint64_t{1} << 30) * 3600);
  EXPECT_EQ(dog.OnOutput(uint64_t{1} << 30, kT0), std::nullopt);
  EXPECT_EQ(dog.ReadBudget(kT0), (uint64_t{1} << 30) * 3599);
  EXPECT_EQ(dog.ReadBudget(kT0 + seconds(1)), (uint64_t{1} << 30) * 3600);
}

TEST(WatchdogTest, PauseLastsUntilTheBucketHoldsOneResumeAgain) {
  Watchdog dog(Throttle(kMiB, 10), kT0);
  ASSERT_EQ(dog.ResumeBytes(), 64u * 1024);  // one read: more than 1/16 s at 1 MiB/s
  dog.OnOutput(10 * kMiB, kT0);
  ASSERT_EQ(dog.ReadBudget(kT0), 0u);
  const auto first = dog.PauseOutput(kT0);
  EXPECT_TRUE(first.new_episode);
  EXPECT_TRUE(dog.output_paused());
  EXPECT_EQ(first.resume_at, kT0 + milliseconds(62) + std::chrono::microseconds(500));
  EXPECT_EQ(dog.ReadBudget(first.resume_at), 64u * 1024);
  dog.ResumeOutput(first.resume_at);
  EXPECT_FALSE(dog.output_paused());
  dog.OnOutput(64 * 1024, first.resume_at);
  const auto second = dog.PauseOutput(first.resume_at);
  EXPECT_FALSE(second.new_episode) << "one flood is one episode, however many pauses";
  EXPECT_EQ(second.resume_at - first.resume_at, milliseconds(62) + std::chrono::microseconds(500));
  EXPECT_EQ(dog.throttle_episodes(), 1u);
  // Both pauses, the second still running.
  EXPECT_EQ(dog.ThrottledFor(second.resume_at), milliseconds(125));
}

TEST(WatchdogTest, ResumeBytesIsASixteenthOfASecondAtHighRatesAndAtMostTheBucket) {
  EXPECT_EQ(Watchdog(Throttle(64 * kMiB, 1), kT0).ResumeBytes(), 4 * kMiB);
  EXPECT_EQ(Watchdog(Throttle(1000, 5), kT0).ResumeBytes(), 5000u);
}

// A writer that is always ready (a pipe that never runs dry), read the way Session reads:
// up to the budget, then a pause until the resume time. 40 MB at 1 MiB/s with a 10 MiB burst
// take (40 MB - 10 MiB) / 1 MiB/s, in one episode and at most 16 pauses a second.
TEST(WatchdogTest, ASustainedFloodIsReadAtTheRateAfterTheBurst) {
  constexpr uint64_t kTotal = 40526316;
  Watchdog dog(Throttle(kMiB, 10, 0, 900), kT0);
  Clock::time_point now = kT0;
  uint64_t read = 0;
  int pauses = 0;
  while (read < kTotal) {
    const uint64_t budget = dog.ReadBudget(now);
    const uint64_t n = std::min(kTotal - read, std::min<uint64_t>(budget, 512 * 1024));
    ASSERT_GT(n, 0u) << "woken with nothing to read at " << (now - kT0).count() << " ns";
    EXPECT_EQ(dog.OnOutput(n, now), std::nullopt);
    read += n;
    if (n == budget) {
      const auto pause = dog.PauseOutput(now);
      ASSERT_GT(pause.resume_at, now);
      EXPECT_EQ(pause.new_episode, pauses == 0);
      EXPECT_EQ(dog.OnDeadline(pause.resume_at), std::nullopt);
      now = pause.resume_at;
      dog.ResumeOutput(now);
      ++pauses;
    }
  }
  const double took = std::chrono::duration<double>(now - kT0).count();
  const double want = static_cast<double>(kTotal - 10 * kMiB) / kMiB;
  EXPECT_NEAR(took, want, 0.1);
  EXPECT_LE(pauses, static_cast<int>(took * 16) + 1);
  EXPECT_EQ(dog.throttle_episodes(), 1u);
  EXPECT_NEAR(std::chrono::duration<double>(dog.ThrottledFor(now)).count(), want, 0.1);
}

TEST(WatchdogTest, AnEpisodeEndsOnceTheBucketIsFullAgain) {
  Watchdog dog(Throttle(1000, 2), kT0);
  dog.OnOutput(2000, kT0);
  auto pause = dog.PauseOutput(kT0);
  EXPECT_TRUE(pause.new_episode);
  dog.ResumeOutput(pause.resume_at);
  // Quiet until the bucket is full (2 s after it was emptied), then a second flood.
  dog.OnOutput(2000, kT0 + seconds(2));
  pause = dog.PauseOutput(kT0 + seconds(2));
  EXPECT_TRUE(pause.new_episode);
  EXPECT_EQ(dog.throttle_episodes(), 2u);
}

TEST(WatchdogTest, APausedSessionIsNotIdleButTheWallDeadlineStillHolds) {
  // Resume needs the whole 5,000-byte bucket: a pause of 5 s, longer than the 1 s idle.
  Watchdog dog(Throttle(1000, 5, /*wall=*/8, /*idle=*/1), kT0);
  dog.OnOutput(5000, kT0);
  const auto pause = dog.PauseOutput(kT0);
  ASSERT_EQ(pause.resume_at, kT0 + seconds(5));
  EXPECT_EQ(dog.NextDeadline(), kT0 + seconds(8)) << "only the wall deadline while paused";
  EXPECT_EQ(dog.OnDeadline(kT0 + seconds(3)), std::nullopt);
  dog.ResumeOutput(pause.resume_at);
  // Resuming is activity: idle counts from there.
  EXPECT_EQ(dog.NextDeadline(), kT0 + seconds(6));
  EXPECT_EQ(dog.OnDeadline(kT0 + seconds(6)),
            (Verdict{EndReason::kTimeoutIdle, KillMode::kGraceful}));
  // Paused again, the wall deadline ends it all the same.
  dog.OnOutput(5000, kT0 + seconds(5) + milliseconds(10));
  dog.PauseOutput(kT0 + seconds(5) + milliseconds(10));
  EXPECT_EQ(dog.OnDeadline(kT0 + seconds(8)),
            (Verdict{EndReason::kTimeoutWall, KillMode::kGraceful}));
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
