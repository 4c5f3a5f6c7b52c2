// The policy fields of per-session ids: workspace_owner (who owns a session's workspace files
// on disk) and limits.pty_max (the session's devpts max=), with their defaults and their
// load errors as exact `FILE:POINTER: reason` texts. Runs as any user; reads no files.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "supervisor/policy.h"

namespace mp::supervisor {
namespace {

constexpr char kFile[] = "/p/t.json";

std::string Doc(const std::string& extra, const std::string& run_as = R"({"user": "nobody"})") {
  return R"({"description": "d", "type": "exec", "run_as": )" + run_as +
         R"(, "workspace_roots": ["/srv/ws"])" + (extra.empty() ? "" : ", " + extra) + "}";
}

std::string E(const std::string& pointer_and_reason) {
  return std::string(kFile) + ":" + pointer_and_reason;
}

TEST(PolicyIdsTest, DefaultsAreRunAsAndThirtyTwoTerminals) {
  PolicyLoad load = ParsePolicy(kFile, Doc(""));
  ASSERT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
  EXPECT_EQ(load.policy->workspace_owner.user, "");
  EXPECT_EQ(load.policy->workspace_owner.group, "");
  EXPECT_EQ(load.policy->limits.pty_max, 32u);
}

TEST(PolicyIdsTest, ReadsWorkspaceOwnerAndPtyMax) {
  PolicyLoad load =
      ParsePolicy(kFile, Doc(R"("workspace_owner": {"user": "alice", "group": "staff"},
                    "limits": {"pty_max": 4})"));
  ASSERT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
  EXPECT_EQ(load.policy->workspace_owner.user, "alice");
  EXPECT_EQ(load.policy->workspace_owner.group, "staff");
  EXPECT_EQ(load.policy->limits.pty_max, 4u);
}

TEST(PolicyIdsTest, RefusesBadOwnersAndPtyCaps) {
  struct Case {
    std::string text;
    std::vector<std::string> errors;
  };
  const Case cases[] = {
      {Doc(R"("workspace_owner": {"user": "root"})"),
       {E("/workspace_owner/user: \"root\" is refused unless run_as.allow_root is true")}},
      {Doc(R"("workspace_owner": {"user": "alice", "group": "root"})"),
       {E("/workspace_owner/group: \"root\" is refused unless run_as.allow_root is true")}},
      {Doc(R"("workspace_owner": {"group": "staff"})"),
       {E("/workspace_owner/user: required field is missing")}},
      {Doc(R"("workspace_owner": {"user": "a b"})"),
       {E("/workspace_owner/user: \"a b\" is not a user or group name "
          "(^[a-z_][a-z0-9_.-]{0,31}$)")}},
      {Doc(R"("workspace_owner": {"user": "alice", "uid": 5})"),
       {E("/workspace_owner/uid: unknown field (known: user, group)")}},
      {Doc(R"("limits": {"pty_max": 0})"),
       {E("/limits/pty_max: value 0 is out of range [1, 4096]")}},
      {Doc(R"("limits": {"pty_max": 5000})"),
       {E("/limits/pty_max: value 5000 is out of range [1, 4096]")}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ParsePolicy(kFile, c.text).errors, c.errors) << c.text;
  }
}

TEST(PolicyIdsTest, RootOwnerNeedsAllowRoot) {
  PolicyLoad load = ParsePolicy(kFile, Doc(R"("workspace_owner": {"user": "root"})",
                                           R"({"user": "root", "allow_root": true})"));
  EXPECT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
}

}  // namespace
}  // namespace mp::supervisor
