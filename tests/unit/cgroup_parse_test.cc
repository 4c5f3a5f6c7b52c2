// Parsing of cgroup keyed files; runs as any user, touches no cgroup.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace mp::sandbox
