// ConnectionLimits (http/connection_limits.h) with injected time points: the pre-auth count
// per address, eviction of the oldest unauthenticated connection (per address and global), the
// token bucket, loopback and IPv6 /64 keys, and the bound on remembered addresses. Pure; runs
// as any user.
#include "http/connection_limits.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace mp::http {
namespace {

using std::chrono::milliseconds;
using Verdict = ConnectionLimits::Verdict;
using Id = ConnectionLimits::Id;

std::string Key(std::string_view ip) { return ConnectionLimits::KeyOf(*ParseIpAddress(ip)); }

const ConnectionLimits::Clock::time_point kT0{std::chrono::hours(1000)};

// Records which connections were evicted, in order.
struct Evicted {
  std::vector<int> order;
  ConnectionLimits::Evictor For(int n) {
    return [this, n] { order.push_back(n); };
  }
};

TEST(ConnectionLimitsTest, PreauthCapPerAddressWithoutEviction) {
  ConnectionLimits limits(3, 0, /*evict=*/false);
  const std::string a = Key("192.0.2.1");
  std::vector<Id> ids;
  for (int i = 0; i < 3; ++i) {
    const auto adm = limits.Open(a, kT0);
    EXPECT_EQ(adm.verdict, Verdict::kAdmit) << i;
    ids.push_back(adm.id);
  }
  EXPECT_EQ(limits.Open(a, kT0).verdict, Verdict::kTooManyOpen);
  EXPECT_EQ(limits.Open(Key("192.0.2.2"), kT0).verdict, Verdict::kAdmit);  // another address
  limits.Release(ids[0]);  // one authenticated or closed
  ids[0] = limits.Open(a, kT0).id;
  EXPECT_NE(ids[0], 0u);
  EXPECT_EQ(limits.preauth(a), 3u);
  for (Id id : ids) limits.Release(id);
  limits.Release(ids[0]);  // an extra release does nothing
  EXPECT_EQ(limits.preauth(a), 0u);
  EXPECT_EQ(limits.tracked(), 1u) << "an address with nothing open is forgotten";
  EXPECT_FALSE(limits.EvictOldest()) << "eviction is off";
  EXPECT_EQ(limits.evictions(), 0u);
}

// A full cap admits the new connection and evicts the address's oldest unauthenticated one;
// other addresses and authenticated (released) connections are untouched.
TEST(ConnectionLimitsTest, FullCapEvictsTheAddresssOldest) {
  ConnectionLimits limits(3, 0);
  Evicted evicted;
  const std::string a = Key("192.0.2.1");
  const Id other = limits.Open(Key("192.0.2.9"), kT0, evicted.For(99)).id;  // oldest of all
  std::vector<Id> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(limits.Open(a, kT0, evicted.For(i)).id);
  limits.Release(ids[0]);  // authenticated: never evicted
  ids.push_back(limits.Open(a, kT0, evicted.For(3)).id);
  EXPECT_TRUE(evicted.order.empty()) << "room was left by the release";
  const auto adm = limits.Open(a, kT0, evicted.For(4));
  EXPECT_EQ(adm.verdict, Verdict::kAdmit);
  EXPECT_EQ(evicted.order, (std::vector<int>{1}));  // the oldest still unauthenticated
  EXPECT_EQ(limits.preauth(a), 3u);
  (void)limits.Open(a, kT0, evicted.For(5));
  EXPECT_EQ(evicted.order, (std::vector<int>{1, 2}));
  EXPECT_EQ(limits.evictions(), 2u);
  // An evicted connection's own release, when its session goes, changes nothing.
  limits.Release(ids[1]);
  EXPECT_EQ(limits.preauth(a), 3u);
  EXPECT_EQ(limits.preauth(Key("192.0.2.9")), 1u);
  limits.Release(other);
}

// The global cap: the oldest unauthenticated connection of any address (exempt ones included)
// goes; with none left, nothing does.
TEST(ConnectionLimitsTest, EvictOldestAcrossAddresses) {
  ConnectionLimits limits(0, 0);
  Evicted evicted;
  const Id exempt = limits.Track(evicted.For(0));  // a trusted proxy's connection
  const Id a = limits.Open(Key("192.0.2.1"), kT0, evicted.For(1)).id;
  const Id b = limits.Open(Key("2001:db8::1"), kT0, evicted.For(2)).id;
  EXPECT_EQ(limits.unauthenticated(), 3u);
  limits.Release(a);  // authenticated
  EXPECT_TRUE(limits.EvictOldest());
  EXPECT_TRUE(limits.EvictOldest());
  EXPECT_EQ(evicted.order, (std::vector<int>{0, 2}));
  EXPECT_FALSE(limits.EvictOldest()) << "every remaining connection has authenticated";
  EXPECT_EQ(limits.unauthenticated(), 0u);
  limits.Release(exempt);
  limits.Release(b);
  EXPECT_EQ(limits.evictions(), 2u);
}

// A connection handed to another object (the WebSocket auth gate) is closed by the new owner.
TEST(ConnectionLimitsTest, SetEvictorHandsTheConnectionOver) {
  ConnectionLimits limits(1, 0);
  Evicted evicted;
  const std::string a = Key("192.0.2.1");
  const Id id = limits.Open(a, kT0, evicted.For(1)).id;
  limits.SetEvictor(id, evicted.For(2));
  (void)limits.Open(a, kT0, evicted.For(3));
  EXPECT_EQ(evicted.order, (std::vector<int>{2}));
}

TEST(ConnectionLimitsTest, TokenBucketPerAddress) {
  ConnectionLimits limits(0, 5);  // 5 per second, bursts of 10
  const std::string a = Key("192.0.2.1");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(limits.Open(a, kT0).verdict, Verdict::kAdmit) << i;
  EXPECT_EQ(limits.Open(a, kT0).verdict, Verdict::kTooFast);
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(100)).verdict, Verdict::kTooFast);  // half a token
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(200)).verdict, Verdict::kAdmit);
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(200)).verdict, Verdict::kTooFast);
  // Refused attempts cost nothing; after two seconds the bucket is full again, not fuller.
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(limits.Open(a, kT0 + milliseconds(10'000)).verdict, Verdict::kAdmit);
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(10'000)).verdict, Verdict::kTooFast);
  EXPECT_EQ(limits.Open(Key("192.0.2.2"), kT0).verdict, Verdict::kAdmit);
}

// A connection refused for its rate evicts nobody: a flood beyond the rate cannot churn the
// address's connections out.
TEST(ConnectionLimitsTest, RefusedForRateEvictsNobody) {
  ConnectionLimits limits(2, 1);  // bursts of 2
  Evicted evicted;
  const std::string a = Key("192.0.2.1");
  for (int i = 0; i < 2; ++i) (void)limits.Open(a, kT0, evicted.For(i));
  EXPECT_EQ(limits.Open(a, kT0, evicted.For(2)).verdict, Verdict::kTooFast);
  EXPECT_TRUE(evicted.order.empty());
  EXPECT_EQ(limits.Open(a, kT0 + milliseconds(1000), evicted.For(3)).verdict, Verdict::kAdmit);
  EXPECT_EQ(evicted.order, (std::vector<int>{0}));
}

// Review 3's NEW-1: a flood from loopback (any 127.x, FIN at once, so each connection is
// released again) is all admitted, so it cannot spend the operator's new connections; the same
// flood from a remote address is still refused beyond its burst. Control: with the rate on
// loopback (the old behaviour) the loopback flood is refused too, and the operator after it.
TEST(ConnectionLimitsTest, LoopbackHasNoAcceptRate) {
  for (const bool rate_on_loopback : {false, true}) {
    SCOPED_TRACE(rate_on_loopback ? "control: the rate on loopback" : "loopback exempt");
    ConnectionLimits limits(128, 100, true, 65536, rate_on_loopback);  // bursts of 200
    auto flood = [&](const std::string& key) {
      int refused = 0;
      for (int i = 0; i < 10'000; ++i) {
        const auto adm = limits.Open(key, kT0 + milliseconds(i / 10));  // 10,000 per second
        if (adm.verdict == Verdict::kTooFast) ++refused;
        limits.Release(adm.id);
      }
      return refused;
    };
    const int loopback_refused = flood(Key("127.0.3." + std::to_string(7)));
    const auto op = limits.Open(Key("127.0.0.1"), kT0 + milliseconds(1000)).verdict;
    const int remote_refused = flood(Key("192.0.2.1"));
    // A remote flood is refused beyond 200 + 100/s (about 100 admitted over its second).
    EXPECT_GE(remote_refused, 9'600);
    EXPECT_LE(remote_refused, 9'800);
    if (!rate_on_loopback) {
      EXPECT_EQ(loopback_refused, 0);
      EXPECT_EQ(op, Verdict::kAdmit);
    } else {
      EXPECT_GE(loopback_refused, 9'600) << "the control did not reproduce NEW-1";
      EXPECT_EQ(op, Verdict::kTooFast) << "the control did not reproduce NEW-1";
    }
  }
}

TEST(ConnectionLimitsTest, Ipv6CountsPerSlash64) {
  ConnectionLimits limits(2, 0, /*evict=*/false);
  EXPECT_EQ(Key("2001:db8:1:2::1"), Key("2001:db8:1:2:ffff::9"));
  EXPECT_NE(Key("2001:db8:1:2::1"), Key("2001:db8:1:3::1"));
  EXPECT_NE(Key("0.0.0.1"), Key("::2"));
  EXPECT_EQ(limits.Open(Key("2001:db8:1:2::1"), kT0).verdict, Verdict::kAdmit);
  EXPECT_EQ(limits.Open(Key("2001:db8:1:2::2"), kT0).verdict, Verdict::kAdmit);
  EXPECT_EQ(limits.Open(Key("2001:db8:1:2:aaaa::3"), kT0).verdict, Verdict::kTooManyOpen);
  EXPECT_EQ(limits.Open(Key("2001:db8:1:3::1"), kT0).verdict, Verdict::kAdmit);
}

// Every local process may pick any 127.x source address: loopback is one key, so ten of them
// do not hold ten times the cap. Control: ten addresses of a network are ten keys.
TEST(ConnectionLimitsTest, LoopbackIsOneAddress) {
  EXPECT_EQ(Key("127.0.0.1"), "loopback");
  EXPECT_EQ(Key("127.255.1.2"), "loopback");
  EXPECT_EQ(Key("::1"), "loopback");
  EXPECT_EQ(Key("::ffff:127.0.0.2"), "loopback");
  EXPECT_NE(Key("::2"), "loopback");
  EXPECT_NE(Key("128.0.0.1"), "loopback");
  ConnectionLimits limits(4, 0, /*evict=*/false);
  int admitted = 0;
  for (int i = 2; i <= 11; ++i) {
    for (int j = 0; j < 4; ++j) {
      admitted += limits.Open(Key("127.0.0." + std::to_string(i)), kT0).verdict == Verdict::kAdmit;
    }
  }
  EXPECT_EQ(admitted, 4);
  ConnectionLimits control(4, 0, /*evict=*/false);
  admitted = 0;
  for (int i = 2; i <= 11; ++i) {
    for (int j = 0; j < 4; ++j) {
      admitted += control.Open(Key("10.0.0." + std::to_string(i)), kT0).verdict == Verdict::kAdmit;
    }
  }
  EXPECT_EQ(admitted, 40);
}

TEST(ConnectionLimitsTest, RemembersABoundedNumberOfAddresses) {
  ConnectionLimits limits(0, 1, true, 100);
  for (int i = 0; i < 1000; ++i) {
    const std::string k = Key("10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250));
    const auto adm = limits.Open(k, kT0);
    EXPECT_EQ(adm.verdict, Verdict::kAdmit);
    limits.Release(adm.id);
  }
  EXPECT_LE(limits.tracked(), 100u);
  // Addresses with connections open are never forgotten.
  ConnectionLimits held(1, 0, false, 10);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(held.Open(Key("10.1.0." + std::to_string(i)), kT0).verdict, Verdict::kAdmit);
  EXPECT_EQ(held.Open(Key("10.1.0.0"), kT0).verdict, Verdict::kTooManyOpen);
}

}  // namespace
}  // namespace mp::http
