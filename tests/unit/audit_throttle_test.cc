// AuditThrottle (http/audit_throttle.h): the API's audit lines of one kind are bounded per key
// and in all per window, whatever the number of keys, and what was held back comes out as one
// summary per key when the window ends. Time is passed in; no clock, no I/O.
#include "http/audit_throttle.h"

#include <string>

#include <gtest/gtest.h>

namespace mp::http {
namespace {

using Clock = AuditThrottle::Clock;
using std::chrono::seconds;

AuditThrottleLimits Limits(uint32_t per_key, uint32_t total, size_t max_keys = 4096,
                           size_t max_summaries = 20) {
  return {per_key, total, seconds(60), max_keys, max_summaries};
}

int Admitted(AuditThrottle& t, const std::string& key, int n, Clock::time_point now) {
  int admitted = 0;
  for (int i = 0; i < n; ++i) admitted += t.Admit(key, now) ? 1 : 0;
  return admitted;
}

TEST(AuditThrottleTest, AFloodFromOneKeyWritesNLinesThenOneSummary) {
  AuditThrottle t(Limits(10, 100));
  const Clock::time_point t0{};
  EXPECT_EQ(Admitted(t, "203.0.113.7", 1000, t0), 10);
  EXPECT_TRUE(t.TakeSummaries(t0 + seconds(59)).empty());  // the window still runs
  const auto summaries = t.TakeSummaries(t0 + seconds(60));
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0].key, "203.0.113.7");
  EXPECT_EQ(summaries[0].count, 990u);
  EXPECT_TRUE(t.TakeSummaries(t0 + seconds(61)).empty());  // taken once
  // The next window starts fresh.
  EXPECT_EQ(Admitted(t, "203.0.113.7", 20, t0 + seconds(61)), 10);
}

TEST(AuditThrottleTest, OtherKeysAreNotStarvedByOne) {
  AuditThrottle t(Limits(10, 100));
  const Clock::time_point t0{};
  EXPECT_EQ(Admitted(t, "198.51.100.1", 500, t0), 10);
  EXPECT_EQ(Admitted(t, "198.51.100.2", 3, t0), 3);
}

TEST(AuditThrottleTest, ManyKeysAreBoundedInAllAndInMemory) {
  AuditThrottle t(Limits(10, 100, /*max_keys=*/64));
  const Clock::time_point t0{};
  int admitted = 0;
  for (int i = 0; i < 10'000; ++i) admitted += t.Admit("k" + std::to_string(i), t0) ? 1 : 0;
  // The first 64 keys one line each; every later key shares one key's budget ("*").
  EXPECT_EQ(admitted, 64 + 10);
  const auto summaries = t.TakeSummaries(t0 + seconds(60));
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0].key, AuditThrottle::kOtherKeys);
  EXPECT_EQ(summaries[0].count, 10'000u - 74u);
}

TEST(AuditThrottleTest, LinesInAllAndSummariesAreBounded) {
  AuditThrottle t(Limits(10, 100, 4096, /*max_summaries=*/5));
  const Clock::time_point t0{};
  int admitted = 0;
  for (int k = 0; k < 30; ++k) admitted += Admitted(t, "k" + std::to_string(k), 50, t0);
  EXPECT_EQ(admitted, 100);  // lines_total: ten keys' worth
  const auto summaries = t.TakeSummaries(t0 + seconds(60));
  // Five keys by name, the rest folded into "*"; nothing is lost in the sum.
  ASSERT_EQ(summaries.size(), 6u);
  EXPECT_EQ(summaries.back().key, AuditThrottle::kOtherKeys);
  uint64_t held = 0;
  for (const auto& s : summaries) held += s.count;
  EXPECT_EQ(held, 30u * 50u - 100u);
}

TEST(AuditThrottleTest, AQuietKeyIsNeverSummarized) {
  AuditThrottle t(Limits(10, 100));
  const Clock::time_point t0{};
  EXPECT_EQ(Admitted(t, "a", 10, t0), 10);
  EXPECT_FALSE(t.holding());
  EXPECT_TRUE(t.TakeSummaries(t0 + seconds(120)).empty());
}

// Control: with limits above the flood, every line is written: the bound above is the
// throttle's doing, not the probe's.
TEST(AuditThrottleTest, ControlWithoutABoundEveryLineIsWritten) {
  AuditThrottle t(Limits(1'000'000, 1'000'000));
  EXPECT_EQ(Admitted(t, "203.0.113.7", 1000, Clock::time_point{}), 1000);
}

}  // namespace
}  // namespace mp::http
