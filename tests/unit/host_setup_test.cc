// What a policy needs from the host (src/supervisor/host_setup.cc): the run_as user and group,
// the state dirs, a preset's command; each problem with the command that fixes it, as one
// host_setup error at spawn and as dev mode's summary at start. A fake user database and
// is_executable; the state dirs are real directories under /var/tmp.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "supervisor/host_setup.h"
#include "supervisor/policy.h"

namespace mp::supervisor {
namespace {

constexpr char kDoc[] = "(docs/policies.md, \"Installing the agents and their credentials\")";

class HostSetupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Not under /tmp: the loader refuses paths there (the sandbox's /tmp covers them).
    std::string tmpl = "/var/tmp/mp-host-setup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << tmpl;
    dir_ = tmpl;
    // The workspaces apart from the state dirs, which may not lie inside a workspace root.
    ASSERT_EQ(::mkdir((dir_ + "/ws").c_str(), 0755), 0);
    host_.lookup_user = [](const std::string& u) -> std::optional<UserIds> {
      if (u == "agent") return UserIds{1234, 2345};
      if (u == "nobody") return UserIds{65534, 65534};
      return std::nullopt;
    };
    host_.lookup_group = [](const std::string& g) -> std::optional<gid_t> {
      return g == "agents" ? std::optional<gid_t>(3456) : std::nullopt;
    };
    host_.is_executable = [this](const std::string& path) { return installed_.count(path) > 0; };
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A print policy named `name` running `command` as `user`, with `extra` members.
  std::shared_ptr<const Policy> Parse(const std::string& name, const std::string& user,
                                      const std::string& command, const std::string& extra = "") {
    const std::string text = R"({"description": "d", "type": "print", "command": [")" + command +
                             R"(", "-p"], "bypasses_agent_permissions": false,
        "run_as": {"user": ")" +
                             user + R"("}, "workspace_roots": [")" + dir_ + R"(/ws"],
        "env": {"set": {"PATH": "/opt/a:/opt/b"}})" +
                             (extra.empty() ? "" : ", " + extra) + "}";
    PolicyLoad load = ParsePolicy(name + ".json", text);
    EXPECT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
    return load.policy;
  }

  std::string dir_;
  SpawnHost host_;
  std::set<std::string> installed_;
};

TEST_F(HostSetupTest, AReadyPolicyHasNoProblems) {
  ASSERT_EQ(::mkdir((dir_ + "/state").c_str(), 0700), 0);
  installed_ = {"/opt/b/agentcli"};  // found in the second PATH directory
  auto p = Parse("t", "agent", "agentcli", R"("state_dirs": [")" + dir_ + R"(/state"])");
  ASSERT_TRUE(p);
  EXPECT_TRUE(FindHostSetupProblems(*p, host_).empty());
  EXPECT_TRUE(CheckHostSetup(*p, host_).has_value());
}

// Everything missing at once, in the order an operator fixes it, each with its remedy.
TEST_F(HostSetupTest, EveryProblemIsNamedWithWhatFixesIt) {
  ASSERT_EQ(::symlink("/etc", (dir_ + "/linked").c_str()), 0);
  auto p = Parse("claude", "monkeyproof-session", "agentcli",
                 R"("state_dirs": [")" + dir_ + R"(/missing", ")" + dir_ + R"(/linked"])");
  ASSERT_TRUE(p);
  auto r = CheckHostSetup(*p, host_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kHostSetup);
  EXPECT_EQ(r.error().field, "");  // no request member is at fault
  EXPECT_EQ(r.error().what,
            "policy \"claude\" cannot run on this host yet: the user \"monkeyproof-session\" "
            "(run_as.user) does not exist: create it with `useradd --system --user-group "
            "--no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "
            "monkeyproof-session` (the package creates monkeyproof-session); the state dir \"" +
                dir_ +
                "/missing\" does not exist: create it with `install -d -o monkeyproof-session -g "
                "monkeyproof-session -m 0700 " +
                dir_ + "/missing`; the state dir \"" + dir_ +
                "/linked\" is not a directory reached without a symlink: remove what is there, "
                "then create it with `install -d -o monkeyproof-session -g monkeyproof-session "
                "-m 0700 " +
                dir_ +
                "/linked`; the command \"agentcli\" is not installed (not found in the policy's "
                "PATH \"/opt/a:/opt/b\"): install it on the host " +
                kDoc + " " + kDoc);
}

TEST_F(HostSetupTest, TheGroupOfTheRemedyIsTheUsersOrTheConfiguredOne) {
  auto own = Parse("t", "agent", "/usr/bin/true", R"("state_dirs": [")" + dir_ + R"(/s"])");
  auto problems = FindHostSetupProblems(*own, host_);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].remedy, "create it with `install -d -o agent -g 2345 -m 0700 " + dir_ +
                                    "/s`");  // the existing user's primary group
  EXPECT_EQ(problems[1].what,
            "the command \"/usr/bin/true\" is not installed (no executable file there)");

  Policy grouped = *own;
  grouped.run_as.group = "staff";
  problems = FindHostSetupProblems(grouped, host_);
  ASSERT_GE(problems.size(), 2u);
  EXPECT_EQ(problems[0].what, "the group \"staff\" (run_as.group) does not exist");
  EXPECT_EQ(problems[0].remedy, "create it with `groupadd --system staff`");
  EXPECT_EQ(problems[1].remedy,
            "create it with `install -d -o agent -g staff -m 0700 " + dir_ + "/s`");
}

// The command is looked up only where the host's view is the sandbox's.
TEST_F(HostSetupTest, TheCommandIsCheckedOnlyWhereTheHostCanTell) {
  auto plain = Parse("t", "agent", "agentcli");
  ASSERT_EQ(FindHostSetupProblems(*plain, host_).size(), 1u);
  // A policy mount may bring it in: not checked.
  auto mounted = Parse("t", "agent", "agentcli",
                       R"("mounts": [{"source": ")" + dir_ + R"(", "target": "/opt/a"}])");
  EXPECT_TRUE(FindHostSetupProblems(*mounted, host_).empty());
  // A request may set PATH: not checked.
  auto own_path = Parse("t", "agent", "agentcli", R"("request_env": {"allow": ["PATH"]})");
  EXPECT_TRUE(FindHostSetupProblems(*own_path, host_).empty());
  // Installed where the sandbox hides it: missing.
  installed_ = {"/opt/a/agentcli"};
  EXPECT_TRUE(FindHostSetupProblems(*plain, host_).empty());
  auto hidden = Parse("t", "agent", "agentcli", R"("hide": ["/opt/a"])");
  EXPECT_EQ(FindHostSetupProblems(*hidden, host_).size(), 1u);
  // Without is_executable (the unit tests' fake hosts) the command is not checked.
  host_.is_executable = nullptr;
  installed_.clear();
  EXPECT_TRUE(FindHostSetupProblems(*plain, host_).empty());
}

// Spawning under such a policy answers host_setup before anything about the request.
TEST_F(HostSetupTest, BuildSpawnRequestAnswersHostSetupFirst) {
  auto p = Parse("t", "ghost", "agentcli");
  auto e = Tighten(*p, {});
  ASSERT_TRUE(e.has_value());
  SessionLaunch launch;
  launch.task = "hi";
  launch.cwd = "/nonexistent-cwd";  // a bad cwd too: the host's problem is said first
  auto r = BuildSpawnRequest(*e, launch, host_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kHostSetup);
  EXPECT_EQ(r.error().what.rfind("policy \"t\" cannot run on this host yet: the user \"ghost\"", 0),
            0u)
      << r.error().what;
}

// Dev mode's summary at start: each problem once, with the presets it blocks.
TEST_F(HostSetupTest, DevModeSummaryGroupsProblemsByPreset) {
  const std::string policies = dir_ + "/policies";
  ASSERT_EQ(::mkdir(policies.c_str(), 0755), 0);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(policies + "/" + name + ".json") << text;
  };
  write("exec", R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
                   "workspace_roots": [")" +
                    dir_ + R"(/ws"]})");
  for (const std::string name : {"a", "b"}) {
    write(name, R"({"description": "d", "type": "print", "command": ["agentcli"],
                    "bypasses_agent_permissions": false, "run_as": {"user": "ghost"},
                    "workspace_roots": [")" +
                    dir_ + R"(/ws"], "state_dirs": [")" + dir_ + "/state-" + name + R"("],
                    "env": {"set": {"PATH": "/opt/a"}}})");
  }
  auto set = PolicySet::Load(policies);
  ASSERT_TRUE(set.has_value()) << set.error().what;
  EXPECT_EQ(DescribeUnreadyPolicies(*set, host_),
            "2 of 3 presets cannot run on this host yet; a session under one answers 500 "
            "host_setup naming what to do (docs/policies.md, \"Installing the agents and their "
            "credentials\"):\n"
            "  the user \"ghost\" (run_as.user) does not exist (a, b): create it with `useradd "
            "--system --user-group --no-create-home --home-dir /nonexistent --shell "
            "/usr/sbin/nologin ghost` (the package creates monkeyproof-session)\n"
            "  the state dir \"" +
                dir_ +
                "/state-a\" does not exist (a): create it with `install -d -o ghost -g ghost -m "
                "0700 " +
                dir_ +
                "/state-a`\n"
                "  the command \"agentcli\" is not installed (not found in the policy's PATH "
                "\"/opt/a\") (a, b): install it on the host (docs/policies.md, \"Installing the "
                "agents and their credentials\")\n"
                "  the state dir \"" +
                dir_ + "/state-b\" does not exist (b): create it with `install -d -o ghost -g " +
                "ghost -m 0700 " + dir_ + "/state-b`\n");
  // Control: with the user, the dirs and the command there, nothing is printed.
  host_.lookup_user = [](const std::string&) -> std::optional<UserIds> { return UserIds{5, 5}; };
  installed_ = {"/opt/a/agentcli"};
  ASSERT_EQ(::mkdir((dir_ + "/state-a").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir_ + "/state-b").c_str(), 0700), 0);
  EXPECT_EQ(DescribeUnreadyPolicies(*set, host_), "");
}

}  // namespace
}  // namespace mp::supervisor
