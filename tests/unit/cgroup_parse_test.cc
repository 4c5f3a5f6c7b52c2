// Parsing of cgroup keyed files and of /proc/self/cgroup, and the cgroup-root preparer's
// refusals before it writes anything; runs as any user, touches no cgroup.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "sandbox/cgroup.h"

namespace mp::sandbox {
namespace {

TEST(CgroupParseTest, FindsKeyInMemoryEvents) {
  const char* text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
  EXPECT_EQ(FindKeyedValue(text, "oom"), 3u);
  EXPECT_EQ(FindKeyedValue(text, "oom_kill"), 2u);
  EXPECT_EQ(FindKeyedValue(text, "max"), 12u);
  EXPECT_EQ(FindKeyedValue(text, "missing"), std::nullopt);
}

TEST(CgroupParseTest, KeyMustMatchWholeWord) {
  EXPECT_EQ(FindKeyedValue("oom_kill 5\n", "oom"), std::nullopt);
  EXPECT_EQ(FindKeyedValue("usage_usec 77\nuser_usec 5", "user_usec"), 5u);
}

TEST(CgroupParseTest, RejectsGarbageValue) {
  EXPECT_EQ(FindKeyedValue("populated x\n", "populated"), std::nullopt);
  EXPECT_EQ(FindKeyedValue("populated 1\n", "populated"), 1u);
}

TEST(CgroupParseTest, OpenRefusesNonCgroup2Path) {
  auto r = CgroupRoot::Open("/tmp");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("not on a cgroup2 file system"), std::string::npos);
}

TEST(CgroupParseTest, OwnCgroupPathTakesTheUnifiedLine) {
  auto r = OwnCgroupPath("0::/system.slice/monkeyproofd.service\n", "/sys/fs/cgroup");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, "/sys/fs/cgroup/system.slice/monkeyproofd.service");
  // Hybrid hosts list v1 hierarchies first; only "0::" counts.
  r = OwnCgroupPath("12:pids:/x\n1:name=systemd:/y\n0::/user.slice\n", "/sys/fs/cgroup");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, "/sys/fs/cgroup/user.slice");
  r = OwnCgroupPath("0::/\n", "/sys/fs/cgroup");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, "/sys/fs/cgroup");
}

TEST(CgroupParseTest, OwnCgroupPathDropsTheSupervisorsOwnLeaf) {
  auto r = OwnCgroupPath("0::/system.slice/monkeyproofd.service/supervisor\n", "/sys/fs/cgroup");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, "/sys/fs/cgroup/system.slice/monkeyproofd.service");
  r = OwnCgroupPath("0::/a/supervisors\n", "/sys/fs/cgroup");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, "/sys/fs/cgroup/a/supervisors");
}

TEST(CgroupParseTest, OwnCgroupPathWithoutUnifiedLineSaysHowToFixIt) {
  auto r = OwnCgroupPath("1:name=systemd:/y\n", "/sys/fs/cgroup");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("systemd.unified_cgroup_hierarchy=1"), std::string::npos)
      << r.error().what;
}

TEST(CgroupParseTest, PrepareRefusesRelativePathsAndNonCgroup2Parents) {
  auto rel = PrepareCgroupRoot("monkeyproof");
  ASSERT_FALSE(rel);
  EXPECT_NE(rel.error().what.find("neither an absolute path nor \"auto\""), std::string::npos)
      << rel.error().what;
  // A missing root is created only below a cgroup2 parent; /tmp is not one, so nothing is made.
  const std::string missing = "/tmp/mp-cgroup-parse-test-no-such-dir";
  auto r = PrepareCgroupRoot(missing);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("\"/tmp\" is not on a cgroup2 file system"), std::string::npos)
      << r.error().what;
  EXPECT_NE(::access(missing.c_str(), F_OK), 0);
}

// The sessions unit's cgroup is found beside the supervisor's unit, in the same slice, also
// when the supervisor sits in its own "supervisor" leaf (an older layout's restart).
TEST(CgroupParseTest, SiblingUnitCgroupPathIsInTheSameSlice) {
  const char* unit = "monkeyproof-sessions.service";
  auto r = SiblingUnitCgroupPath("0::/system.slice/monkeyproofd.service\n", "/sys/fs/cgroup", unit);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, "/sys/fs/cgroup/system.slice/monkeyproof-sessions.service");
  r = SiblingUnitCgroupPath("0::/system.slice/monkeyproofd.service/supervisor\n", "/sys/fs/cgroup",
                            unit);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, "/sys/fs/cgroup/system.slice/monkeyproof-sessions.service");
  r = SiblingUnitCgroupPath("0::/custom.slice/mp.service\n", "/sys/fs/cgroup", unit);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(*r, "/sys/fs/cgroup/custom.slice/monkeyproof-sessions.service");
  // In the hierarchy's root (no systemd, a container) there is no unit beside it.
  r = SiblingUnitCgroupPath("0::/\n", "/sys/fs/cgroup", unit);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("root of the hierarchy"), std::string::npos) << r.error().what;
  EXPECT_FALSE(SiblingUnitCgroupPath("1:name=systemd:/x\n", "/sys/fs/cgroup", unit));
}

}  // namespace
}  // namespace mp::sandbox
