// session_uid_range: its syntax in monkeyproof.conf, the start check against the user, group
// and subordinate-id databases, and the pool that hands ids to sessions and takes them back
// only once a session's leaf is gone (also for leaves a restarted supervisor finds).
// Pure: the databases and the leaves are injected.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "supervisor/config.h"
#include "supervisor/session_ids.h"

namespace mp::supervisor {
namespace {

TEST(SessionIdsTest, ParsesRangesAndRefusesUnsafeOnes) {
  auto r = ParseIdRange("1879048192-1879113727");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->first, 1879048192u);
  EXPECT_EQ(r->count, 65536u);
  EXPECT_EQ(r->Text(), "1879048192-1879113727");
  EXPECT_FALSE(ParseIdRange("100-200"));          // system ids
  EXPECT_FALSE(ParseIdRange("60000-70000"));      // holds nobody (65534)
  EXPECT_FALSE(ParseIdRange("5000-4000"));        // backwards
  EXPECT_FALSE(ParseIdRange("5000"));             // no LAST
  EXPECT_FALSE(ParseIdRange("5000-4294967295"));  // holds (uid_t)-1
  EXPECT_TRUE(ParseIdRange("5000-5000"));
}

TEST(SessionIdsTest, ConfigKeyIsOffByDefaultAndTakesARange) {
  auto def = ParseConfig("t.conf", "");
  ASSERT_TRUE(def) << def.error().ToString();
  EXPECT_FALSE(def->session_uid_range.has_value());
  auto on = ParseConfig("t.conf", "session_uid_range = 200000-200099\n");
  ASSERT_TRUE(on) << on.error().ToString();
  ASSERT_TRUE(on->session_uid_range.has_value());
  EXPECT_EQ(on->session_uid_range->count, 100u);
  auto off = ParseConfig("t.conf", "session_uid_range = off\n");
  ASSERT_TRUE(off) << off.error().ToString();
  EXPECT_FALSE(off->session_uid_range.has_value());
  auto bad = ParseConfig("t.conf", "session_uid_range = 10-20\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().what.find("session_uid_range"), std::string::npos) << bad.error().what;
}

TEST(SessionIdsTest, StartCheckNamesEveryOverlap) {
  const IdRange range{200000, 100};
  IdDatabases db;
  db.users = {{"root", 0}, {"alice", 1000}};
  db.groups = {{"root", 0}, {"staff", 50}};
  db.subuid_text = "alice:100000:65536\n";
  db.subgid_text = "alice:100000:65536\n";
  EXPECT_TRUE(CheckIdRange(range, db, 50));

  db.users.emplace_back("svc", 200050);
  db.groups.emplace_back("svcgrp", 200099);
  db.subuid_text += "bob:165536:65536\n";  // 165536-231071 covers the range
  auto r = CheckIdRange(range, db, 50);
  ASSERT_FALSE(r);
  const std::string& w = r.error().what;
  EXPECT_NE(w.find("user svc has uid 200050"), std::string::npos) << w;
  EXPECT_NE(w.find("group svcgrp has gid 200099"), std::string::npos) << w;
  EXPECT_NE(w.find("/etc/subuid gives bob 165536-231071"), std::string::npos) << w;
  EXPECT_EQ(w.find("alice"), std::string::npos) << w;

  IdDatabases clean;
  auto small = CheckIdRange(IdRange{200000, 10}, clean, 50);
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().what.find("fewer than max_sessions (50)"), std::string::npos)
      << small.error().what;
}

TEST(SessionIdsTest, PoolNeverHandsOutAnIdWhoseLeafExists) {
  std::set<std::string> leaves;
  SessionIdPool pool(IdRange{5000, 3}, [&](const std::string& l) { return leaves.count(l) > 0; });
  auto a = pool.Acquire("s-a");
  ASSERT_TRUE(a);
  leaves.insert("s-a");
  auto b = pool.Acquire("s-b");
  ASSERT_TRUE(b);
  leaves.insert("s-b");
  EXPECT_EQ(*a, 5000u);
  EXPECT_EQ(*b, 5001u);
  auto c = pool.Acquire("s-c");
  ASSERT_TRUE(c);
  leaves.insert("s-c");
  EXPECT_EQ(*c, 5002u);
  auto full = pool.Acquire("s-d");
  ASSERT_FALSE(full);
  EXPECT_NE(full.error().what.find("5000-5002"), std::string::npos) << full.error().what;

  // A session ended but its leaf is still there: its id stays taken.
  EXPECT_FALSE(pool.Acquire("s-e"));
  leaves.erase("s-b");  // the leaf is gone: the id is free again
  auto again = pool.Acquire("s-f");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 5001u);
}

TEST(SessionIdsTest, PoolSeededFromAnEarlierRunsLeavesSkipsTheirIds) {
  std::set<std::string> leaves = {"s-old"};
  SessionIdPool pool(IdRange{5000, 10}, [&](const std::string& l) { return leaves.count(l) > 0; });
  pool.Seed(5000, "s-old");
  pool.Seed(5000, "s-old");  // several processes of one leaf
  pool.Seed(42, "s-old");    // outside the range (a root session): ignored
  auto a = pool.Acquire("s-new");
  ASSERT_TRUE(a);
  EXPECT_EQ(*a, 5001u);
  EXPECT_EQ(pool.held(), 2u);
  leaves.insert("s-new");
  leaves.erase("s-old");
  auto b = pool.Acquire("s-next");
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, 5000u);
}

}  // namespace
}  // namespace mp::supervisor
