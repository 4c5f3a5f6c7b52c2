// How BuildSpawnRequest (src/supervisor/spawn_request.cc) places the task: as the command's
// last argument up to one execve argument (131071 bytes); beyond that, for a shell run with
// -c/-lc, in the sandbox's task file that the shell sources; for any other command, and over
// 1 MiB, too_large with a message that names the limit. Pure: no sandbox is started.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "common/messages.h"
#include "sandbox/child_plan.h"
#include "supervisor/policy.h"

namespace mp::supervisor {
namespace {

constexpr size_t kArgMax = 32 * 4096 - 1;  // MAX_ARG_STRLEN - 1: the longest argument

class SpawnTaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Not under /tmp: the loader refuses workspace roots there (the sandbox's /tmp covers it).
    std::string tmpl = "/var/tmp/mp-spawn-task-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << tmpl;
    ws_ = tmpl;
    // The session's workspace lies below the root (a root itself is refused).
    ASSERT_EQ(::mkdir((ws_ + "/w").c_str(), 0755), 0);
    host_.lookup_user = [](const std::string&) -> std::optional<UserIds> {
      return UserIds{1234, 1234};
    };
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(ws_, ec);
  }

  // A policy of `type` with `command` (a JSON array, or "" for none).
  Result<sandbox::SpawnRequest> Build(const std::string& type, const std::string& command,
                                      const std::string& task,
                                      std::optional<std::string> request_command = {},
                                      std::optional<std::vector<std::string>> request_args = {}) {
    const std::string text = R"({"description": "d", "type": ")" + type +
                             R"(", "run_as": {"user": "agent"}, "workspace_roots": [")" + ws_ +
                             "\"]" + (command.empty() ? "" : ", \"command\": " + command) +
                             (type == "exec" ? "" : R"(, "bypasses_agent_permissions": false)") +
                             "}";
    PolicyLoad load = ParsePolicy("t.json", text);
    EXPECT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
    if (!load.policy) return PlainError("policy did not load");
    policy_ = load.policy;
    auto e = Tighten(*policy_, {});
    EXPECT_TRUE(e.has_value());
    effective_ = std::move(*e);
    SessionLaunch l;
    l.task = task;
    l.cwd = ws_ + "/w";
    l.command = std::move(request_command);
    l.args = std::move(request_args);
    return BuildSpawnRequest(effective_, l, host_);
  }

  std::string ws_;
  SpawnHost host_;
  std::shared_ptr<const Policy> policy_;
  EffectivePolicy effective_;
};

TEST_F(SpawnTaskTest, UpToOneArgumentTheTaskIsTheLastArgument) {
  const std::string task(kArgMax, 'x');
  auto r = Build("exec", "", task);
  ASSERT_TRUE(r) << r.error().what;
  ASSERT_FALSE(r->argv.empty());
  EXPECT_EQ(r->argv.back(), task);
  EXPECT_TRUE(r->task_file.empty());
  // Agent-style commands too.
  r = Build("print", R"(["/bin/echo", "printed:"])", task);
  ASSERT_TRUE(r) << r.error().what;
  EXPECT_EQ(r->argv.back(), task);
  EXPECT_TRUE(r->task_file.empty());
}

TEST_F(SpawnTaskTest, LongerShellTasksAreSourcedFromTheTaskFile) {
  const std::string sourced = std::string(". ") + sandbox::kTaskFilePath;
  const std::string task(kArgMax + 1, 'y');
  using Args = std::vector<std::string>;
  struct Case {
    std::string type, policy_command;
    std::optional<std::string> request_command;
    std::optional<Args> request_args;
    Args argv_before;
  };
  const std::vector<Case> cases = {
      {"exec", "", std::nullopt, std::nullopt, {"/bin/sh", "-lc"}},
      {"exec", "", "bash", std::nullopt, {"bash", "-lc"}},  // command alone: COMMAND -lc
      {"exec", "", "/usr/bin/zsh", Args{"-e", "-c"}, {"/usr/bin/zsh", "-e", "-c"}},
      {"exec", "", std::nullopt, Args{"-c"}, {"/bin/sh", "-c"}},  // args alone: /bin/sh ARGS
      {"print", R"(["/bin/sh", "-c"])", std::nullopt, std::nullopt, {"/bin/sh", "-c"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.argv_before.front());
    auto r = Build(c.type, c.policy_command, task, c.request_command, c.request_args);
    ASSERT_TRUE(r) << r.error().what;
    std::vector<std::string> want = c.argv_before;
    want.push_back(sourced);
    EXPECT_EQ(r->argv, want);
    EXPECT_TRUE(r->task_file == task);
  }
  // The largest task.
  auto r = Build("exec", "", std::string(wire::kMaxTaskBytes, 'z'));
  ASSERT_TRUE(r) << r.error().what;
  EXPECT_EQ(r->task_file.size(), wire::kMaxTaskBytes);
}

TEST_F(SpawnTaskTest, OtherCommandsRefuseALongTaskNamingTheLimit) {
  const std::string task(kArgMax + 1, 'y');
  using Args = std::vector<std::string>;
  struct Case {
    std::string type, policy_command;
    std::optional<std::string> request_command;
    std::optional<Args> request_args;
  };
  const std::vector<Case> cases = {
      {"print", R"(["/bin/echo", "printed:"])", std::nullopt, std::nullopt},  // agent CLI shape
      {"exec", "", "python3", Args{"-c"}},                                    // not a shell
      {"exec", "", "bash", Args{"script"}},                                   // a shell, not -c
      {"exec", "", std::nullopt, Args{"-x"}},                                 // /bin/sh -x
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.request_command.value_or(c.policy_command));
    auto r = Build(c.type, c.policy_command, task, c.request_command, c.request_args);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
    EXPECT_EQ(r.error().field, "/task");
    EXPECT_NE(r.error().what.find("131071 bytes (MAX_ARG_STRLEN)"), std::string::npos)
        << r.error().what;
    EXPECT_NE(r.error().what.find("task of 131072 bytes"), std::string::npos) << r.error().what;
  }
}

// A task that a policy's fixed command gets as an argument may not begin with "-": the CLI
// would read it as an option and change what the policy fixed (review rev19, finding 4).
// Controls: the same task with a leading space, a policy command that is a shell's -c, and a
// command the request gives itself all take it.
TEST_F(SpawnTaskTest, ATaskBeginningWithADashCannotAddOptionsToAPolicysCommand) {
  auto r = Build("print", R"(["/bin/echo", "printed:"])", "--settings={\"hooks\": 1}");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kPolicyViolation);
  EXPECT_EQ(r.error().field, "/task");
  EXPECT_NE(r.error().what.find("would be read by \"/bin/echo\" as an option"), std::string::npos)
      << r.error().what;
  EXPECT_TRUE(Build("print", R"(["/bin/echo", "printed:"])", " --settings=x"));
  EXPECT_TRUE(Build("exec", R"(["/bin/sh", "-lc"])", "-x"));
  EXPECT_TRUE(Build("exec", "", "-x", "python3", std::vector<std::string>{"-c"}));
}

TEST_F(SpawnTaskTest, OverTheTaskLimitIsTooLarge) {
  auto r = Build("exec", "", std::string(wire::kMaxTaskBytes + 1, 'x'));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  EXPECT_EQ(r.error().what, "task of 1048577 bytes is longer than a task may be (1048576 bytes)");
  EXPECT_EQ(r.error().field, "/task");
}

}  // namespace
}  // namespace mp::supervisor
