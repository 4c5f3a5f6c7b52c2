// `monkeyproofd --dev` with the repository's shipped policies (policies/*.json), driven over its
// control socket in the test VM: the default workspace that dev mode creates, relative cwds,
// `command` without `args`, print and interactive sessions with their own command (exec.json's
// own_command_types), the `shell` preset on a PTY, and the errors a newcomer meets, each one
// sentence with its field. Root in the VM only (the VM guard skips elsewhere).
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "control_client.h"

namespace mp::testing {
namespace {

const std::string kDaemon = MP_MONKEYPROOFD_PATH;
const std::string kBase = "/var/tmp/mp-shipped-policies-test";
const std::string kDefault = "/var/lib/monkeyproof/workspaces/default";  // policies/exec.json

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

class ShippedPoliciesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Dev mode must create the default workspace itself.
    if (std::system(("rm -rf " + kBase + " " + kDefault).c_str()) != 0) return;
    ::mkdir(kBase.c_str(), 0755);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open((kBase + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 2);
      ::execl(kDaemon.c_str(), kDaemon.c_str(), "--dev", "--no-api", "--state-dir",
              (kBase + "/state").c_str(), "--socket", (kBase + "/run/control.sock").c_str(),
              "--cgroup-root", "/sys/fs/cgroup/mp-shipped-policies-test",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  void SetUp() override {
    auto c = ControlClient::Connect(kBase + "/run/control.sock");
    ASSERT_TRUE(c) << c.error().ToString() << "\n" << Slurp(kBase + "/daemon.log");
    client_.emplace(std::move(*c));
  }

  // The spawn's answer: the session, or the error.
  std::variant<wire::SessionInfo, wire::ErrorBody> Spawn(wire::SpawnRequest req) {
    req.client = "test";
    auto r = client_->Call(req);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r) return wire::ErrorBody{};
    if (auto* e = std::get_if<wire::ErrorBody>(&r->body)) return *e;
    return std::get<wire::SessionInfo>(r->body);
  }
  // Spawns and follows to the end: the output and the end record.
  struct Ran {
    std::string out;
    std::optional<wire::EndRecord> end;
    std::string cwd;
    std::string error;
  };
  Ran Run(wire::SpawnRequest req) {
    Ran ran;
    auto answer = Spawn(std::move(req));
    if (auto* e = std::get_if<wire::ErrorBody>(&answer)) {
      ran.error = e->message;
      return ran;
    }
    const auto& info = std::get<wire::SessionInfo>(answer);
    ran.cwd = info.cwd;
    auto ack = client_->Call(wire::SubscribeRequest{info.id, 0});
    EXPECT_TRUE(ack && ack->ok());
    for (;;) {
      auto ev = client_->NextEvent(std::chrono::seconds(60));
      if (!ev) {
        ADD_FAILURE() << ev.error().ToString() << "\n" << ran.out;
        return ran;
      }
      if (auto* o = std::get_if<wire::OutputEvent>(&*ev); o && o->session == info.id) {
        ran.out.append(o->data.begin(), o->data.end());
      } else if (auto* x = std::get_if<wire::ExitEvent>(&*ev); x && x->session == info.id) {
        ran.end = x->end;
        return ran;
      }
    }
  }
  static wire::SpawnRequest Exec(const std::string& task) {
    wire::SpawnRequest r;
    r.task = task;
    return r;
  }
  static wire::ErrorBody ErrorOf(const std::variant<wire::SessionInfo, wire::ErrorBody>& a) {
    EXPECT_TRUE(std::holds_alternative<wire::ErrorBody>(a)) << "the spawn was expected to fail";
    return std::holds_alternative<wire::ErrorBody>(a) ? std::get<wire::ErrorBody>(a)
                                                      : wire::ErrorBody{};
  }

  static pid_t pid_;
  std::optional<ControlClient> client_;
};
pid_t ShippedPoliciesTest::pid_ = -1;

// No cwd: the session runs in exec.json's default workspace, which dev mode created for
// `nobody`, and can write there.
TEST_F(ShippedPoliciesTest, NoCwdRunsInTheDefaultWorkspaceAndWritesThere) {
  struct stat st {};
  ASSERT_EQ(::stat(kDefault.c_str(), &st), 0) << "dev mode did not create " << kDefault;
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  EXPECT_EQ(st.st_uid, nobody->pw_uid);
  auto ran = Run(Exec("pwd; echo written > mark.txt && cat mark.txt; id -un"));
  ASSERT_TRUE(ran.error.empty()) << ran.error;
  ASSERT_TRUE(ran.end);
  EXPECT_EQ(ran.end->exit_code, 0) << ran.out;
  EXPECT_EQ(ran.cwd, kDefault);
  EXPECT_EQ(ran.out, kDefault + "\nwritten\nnobody\n");
  EXPECT_EQ(Slurp(kDefault + "/mark.txt"), "written\n");
}

// A relative cwd is resolved against the default workspace; `..` out of it, a missing
// directory, a cwd outside the roots and a root are refused in one sentence naming /cwd.
TEST_F(ShippedPoliciesTest, RelativeCwd) {
  auto made = Run(Exec("mkdir -p sub/dir"));
  ASSERT_TRUE(made.end && made.end->exit_code == 0) << made.error << made.out;
  auto req = Exec("pwd");
  req.cwd = "sub/dir";
  auto ran = Run(req);
  ASSERT_TRUE(ran.error.empty()) << ran.error;
  EXPECT_EQ(ran.out, kDefault + "/sub/dir\n");

  // `..` out of the default workspace, a missing directory, a cwd outside the roots and a
  // root: one code and one sentence (the cwd's own text aside), naming what is allowed.
  const std::string allowed =
      "is not an existing directory strictly inside the workspace roots of policy \"exec\" "
      "(\"/srv/monkeyproof/workspaces\", \"/var/lib/monkeyproof/workspaces\"); give a directory "
      "below one of the roots (absolute, or relative to the default workspace \"" +
      kDefault +
      "\" and below it; a root itself is refused, and symlinks and `..` may not leave the "
      "root)";
  for (const std::string cwd : {"../..", "missing", "/etc", "/var/lib/monkeyproof/workspaces"}) {
    req.cwd = cwd;
    auto refused = ErrorOf(Spawn(req));
    EXPECT_EQ(refused.code, wire::ErrorCode::kBadRequest) << refused.message;
    EXPECT_EQ(refused.field, "/cwd");
    EXPECT_EQ(refused.message, "cwd \"" + cwd + "\" " + allowed);
    // One sentence: neither the code nor an errno name repeated in it.
    EXPECT_EQ(refused.message.find("bad_request"), std::string::npos) << refused.message;
    EXPECT_EQ(refused.message.find("ENOENT"), std::string::npos) << refused.message;
  }
}

// `command` without `args`: `COMMAND -lc TASK`, so "bash" picks the shell.
TEST_F(ShippedPoliciesTest, CommandWithoutArgsRunsDashLc) {
  auto req = Exec("echo \"$0\"; [[ abc == a* ]] && echo bash-only");
  req.command = "bash";
  auto ran = Run(req);
  ASSERT_TRUE(ran.error.empty()) << ran.error;
  ASSERT_TRUE(ran.end);
  EXPECT_EQ(ran.out, "bash\nbash-only\n");
  EXPECT_EQ(ran.end->exit_code, 0);
  // With args, the task comes last.
  req.task = "one two";
  req.command = "/bin/echo";
  req.args = std::vector<std::string>{"got:"};
  EXPECT_EQ(Run(req).out, "got: one two\n");
}

// exec.json lists print and interactive in own_command_types: a client may run its own
// command as a print session (pipes) or an interactive one (a terminal), without a preset.
TEST_F(ShippedPoliciesTest, PrintAndInteractiveWithTheirOwnCommand) {
  auto req = Exec("hello");
  req.type = wire::SessionType::kPrint;
  req.command = "/bin/echo";
  req.args = std::vector<std::string>{"printed:"};
  auto ran = Run(req);
  ASSERT_TRUE(ran.error.empty()) << ran.error;
  EXPECT_EQ(ran.out, "printed: hello\n");

  req.type = wire::SessionType::kInteractive;
  req.command = "/bin/sh";
  req.args = std::vector<std::string>{"-c"};
  req.task = "[ -t 0 ] && [ -t 1 ] && echo on-a-terminal";
  auto pty = Run(req);
  ASSERT_TRUE(pty.error.empty()) << pty.error;
  EXPECT_NE(pty.out.find("on-a-terminal"), std::string::npos) << pty.out;
}

// The shell preset: an interactive login shell on a PTY that runs the task and stays for
// input (what `monkeyproof attach` types into), until `exit`.
TEST_F(ShippedPoliciesTest, ShellPresetIsAttachable) {
  wire::SpawnRequest req;
  req.type = wire::SessionType::kInteractive;
  req.preset = "shell";
  req.task = "echo ready-$((6*7))";
  auto answer = Spawn(req);
  ASSERT_TRUE(std::holds_alternative<wire::SessionInfo>(answer))
      << std::get<wire::ErrorBody>(answer).message;
  const std::string id = std::get<wire::SessionInfo>(answer).id;
  ASSERT_TRUE(client_->Call(wire::SubscribeRequest{id, 0}));
  std::string out;
  auto read_until = [&](const std::string& needle) {
    while (out.find(needle) == std::string::npos) {
      auto ev = client_->NextEvent(std::chrono::seconds(60));
      if (!ev) return false;
      if (auto* o = std::get_if<wire::OutputEvent>(&*ev))
        out.append(o->data.begin(), o->data.end());
      if (std::holds_alternative<wire::ExitEvent>(*ev))
        return out.find(needle) != std::string::npos;
    }
    return true;
  };
  ASSERT_TRUE(read_until("ready-42")) << out;
  const std::string typed = "echo typed-$((7*6))-$0\n";
  ASSERT_TRUE(client_->Call(wire::StdinRequest{id, {typed.begin(), typed.end()}}));
  ASSERT_TRUE(read_until("typed-42-")) << out;
  const std::string bye = "exit 5\n";
  ASSERT_TRUE(client_->Call(wire::StdinRequest{id, {bye.begin(), bye.end()}}));
  for (;;) {
    auto ev = client_->NextEvent(std::chrono::seconds(60));
    ASSERT_TRUE(ev) << out;
    if (auto* x = std::get_if<wire::ExitEvent>(&*ev); x && x->session == id) {
      EXPECT_EQ(x->end.exit_code, 5) << out;
      break;
    }
  }
}

}  // namespace
}  // namespace mp::testing
