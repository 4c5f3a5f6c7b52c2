// WithNameCache, which SystemSpawnHost puts in front of getpwnam_r/getgrnam_r so that a spawn
// does not go through NSS twice on the supervisor's loop: a name found is answered from the
// cache until its time is up, a name not found is asked again every time, and a time of 0
// caches nothing (the control). Counting fakes stand in for NSS. Runs as any user.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>

#include "supervisor/policy.h"

namespace mp::supervisor {
namespace {

struct Counting {
  std::map<std::string, int> calls;
  std::map<std::string, UserIds> users = {{"alice", {1000, 1000}}};
  std::map<std::string, gid_t> groups = {{"staff", 50}};

  SpawnHost Host() {
    SpawnHost h;
    h.lookup_user = [this](const std::string& name) -> std::optional<UserIds> {
      ++calls["user:" + name];
      auto it = users.find(name);
      return it == users.end() ? std::nullopt : std::optional<UserIds>(it->second);
    };
    h.lookup_group = [this](const std::string& name) -> std::optional<gid_t> {
      ++calls["group:" + name];
      auto it = groups.find(name);
      return it == groups.end() ? std::nullopt : std::optional<gid_t>(it->second);
    };
    return h;
  }
};

TEST(SpawnHostTest, AFoundNameIsAskedOnceWhileItsTimeLasts) {
  Counting fake;
  SpawnHost host = WithNameCache(fake.Host(), std::chrono::hours(1));
  for (int i = 0; i < 3; ++i) {
    auto ids = host.lookup_user("alice");
    ASSERT_TRUE(ids.has_value());
    EXPECT_EQ(ids->uid, 1000u);
    EXPECT_EQ(host.lookup_group("staff"), std::optional<gid_t>(50));
  }
  EXPECT_EQ(fake.calls["user:alice"], 1);
  EXPECT_EQ(fake.calls["group:staff"], 1);
  // Copies of the host (ManagerOptions is copied) share the cache.
  SpawnHost copy = host;
  EXPECT_TRUE(copy.lookup_user("alice").has_value());
  EXPECT_EQ(fake.calls["user:alice"], 1);
}

TEST(SpawnHostTest, AMissingNameIsAskedEveryTimeAndFoundOnceCreated) {
  Counting fake;
  SpawnHost host = WithNameCache(fake.Host(), std::chrono::hours(1));
  EXPECT_FALSE(host.lookup_user("bob").has_value());
  EXPECT_FALSE(host.lookup_user("bob").has_value());
  EXPECT_EQ(fake.calls["user:bob"], 2);
  fake.users["bob"] = {1001, 1001};  // useradd bob
  auto ids = host.lookup_user("bob");
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(ids->uid, 1001u);
  EXPECT_EQ(fake.calls["user:bob"], 3);
}

// Control: without a time to keep them, every lookup reaches NSS, and a changed uid shows at
// once; with one, the change shows only after the time is up (here, never within the test).
TEST(SpawnHostTest, ControlNoTimeMeansNoCache) {
  Counting fake;
  SpawnHost uncached = WithNameCache(fake.Host(), std::chrono::seconds(0));
  SpawnHost cached = WithNameCache(fake.Host(), std::chrono::hours(1));
  EXPECT_EQ(uncached.lookup_user("alice")->uid, 1000u);
  EXPECT_EQ(cached.lookup_user("alice")->uid, 1000u);
  fake.users["alice"] = {2000, 2000};
  EXPECT_EQ(uncached.lookup_user("alice")->uid, 2000u);
  EXPECT_EQ(cached.lookup_user("alice")->uid, 1000u);
  EXPECT_EQ(fake.calls["user:alice"], 3);
}

TEST(SpawnHostTest, TheSystemHostAnswersForRoot) {
  SpawnHost host = SystemSpawnHost();
  auto root = host.lookup_user("root");
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(host.lookup_group("root"), std::optional<gid_t>(0));
  EXPECT_FALSE(host.lookup_user("mp-no-such-user-x").has_value());
}

}  // namespace
}  // namespace mp::supervisor
