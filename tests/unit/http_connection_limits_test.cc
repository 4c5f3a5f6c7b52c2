// ConnectionLimits (http/connection_limits.h) with injected time points: the pre-auth count
// per address, the token bucket, IPv6 /64 keys, and the bound on remembered addresses. Pure;
// runs as any user.
#include "http/connection_limits.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace mp::http {
namespace {

using std::chrono::milliseconds;
using Verdict = ConnectionLimits::Verdict;

std::string Key(std::string_view ip) { return ConnectionLimits::KeyOf(*ParseIpAddress(ip)); }

const ConnectionLimits::Clock::time_point kT0{std::chrono::hours(1000)};

TEST(ConnectionLimitsTest, PreauthCapPerAddress) {
  ConnectionLimits limits(3, 0);
  const std::string a = Key("192.0.2.1");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limits.Open(a, kT0), Verdict::kAdmit) << i;
  EXPECT_EQ(limits.Open(a, kT0), Verdict::kTooManyOpen);
  EXPECT_EQ(limits.Open(Key("192.0.2.2"), kT0), Verdict::kAdmit);  // another address
  limits.Release(a);                                               // one authenticated or closed
  EXPECT_EQ(limits.Open(a, kT0), Verdict::kAdmit);
  EXPECT_EQ(limits.preauth(a), 3u);
  for (int i = 0; i < 3; ++i) limits.Release(a);
  limits.Release(a);  // an extra release does not underflow
  EXPECT_EQ(limits.preauth(a), 0u);
  EXPECT_EQ(limits.tracked(), 1u) << "an address with nothing open is forgotten";
}

TEST(ConnectionLimitsTest, TokenBucketPerAddress) {
  ConnectionLimits limits(0, 5);  // 5 per second, bursts of 10
  const std::string a = Key("192.0.2.1");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(limits.Open(a, kT0), Verdict::kAdmit) << i;
  EXPECT_EQ(limits.Open(a, kT0), Verdict::kTooFast);
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(100)), Verdict::kTooFast);  // half a token
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(200)), Verdict::kAdmit);
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(200)), Verdict::kTooFast);
  // Refused attempts cost nothing; after two seconds the bucket is full again, not fuller.
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(limits.Open(a, kT0 + milliseconds(10'000)), Verdict::kAdmit);
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(10'000)), Verdict::kTooFast);
  EXPECT_EQ(limits.Open(Key("192.0.2.2"), kT0), Verdict::kAdmit);
}

TEST(ConnectionLimitsTest, Ipv6CountsPerSlash64) {
  ConnectionLimits limits(2, 0);
  EXPECT_EQ(Key("2001:db8:1:2::1"), Key("2001:db8:1:2:ffff::9"));
  EXPECT_NE(Key("2001:db8:1:2::1"), Key("2001:db8:1:3::1"));
  EXPECT_NE(Key("0.0.0.1"), Key("::1"));
  EXPECT_EQ(limits.Open(Key("2001:db8:1:2::1"), kT0), Verdict::kAdmit);
  EXPECT_EQ(limits.Open(Key("2001:db8:1:2::2"), kT0), Verdict::kAdmit);
  EXPECT_EQ(limits.Open(Key("2001:db8:1:2:aaaa::3"), kT0), Verdict::kTooManyOpen);
  EXPECT_EQ(limits.Open(Key("2001:db8:1:3::1"), kT0), Verdict::kAdmit);
}

TEST(ConnectionLimitsTest, RemembersABoundedNumberOfAddresses) {
  ConnectionLimits limits(0, 1, 100);
  for (int i = 0; i < 1000; ++i) {
    const std::string k = Key("10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250));
    EXPECT_EQ(limits.Open(k, kT0), Verdict::kAdmit);
    limits.Release(k);
  }
  EXPECT_LE(limits.tracked(), 100u);
  // Addresses with connections open are never forgotten.
  ConnectionLimits held(1, 0, 10);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(held.Open(Key("10.1.0." + std::to_string(i)), kT0), Verdict::kAdmit);
  EXPECT_EQ(held.Open(Key("10.1.0.0"), kT0), Verdict::kTooManyOpen);
}

}  // namespace
}  // namespace mp::http
