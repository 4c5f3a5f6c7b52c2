// Spawn path details the attack suite does not cover: stdio over pipes and a
// PTY, rlimits, namespaces' identity, figures read at the end, the leaf's
// removal, and the one-shot runner `monkeyproofd exec`.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "sandbox_runner.h"

namespace mp::testing {
namespace {

class SpawnTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { runner_ = new SandboxRunner("mp-spawn"); }
  static void TearDownTestSuite() {
    delete runner_;
    runner_ = nullptr;
  }
  static SandboxRunner* runner_;
};
SandboxRunner* SpawnTest::runner_ = nullptr;

std::string ReadUntil(int fd, const std::string& needle, int timeout_ms) {
  std::string out;
  while (out.find(needle) == std::string::npos) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) break;
    char buf[1024];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST_F(SpawnTest, StdinPipeReachesTheCommandAndStdoutStderrAreSeparate) {
  auto req =
      runner_->BaseRequest({"/bin/sh", "-c", "read line; echo \"got:$line\"; echo oops >&2"});
  auto child = sandbox::Spawn(runner_->root(), "stdin-pipe", req);
  ASSERT_TRUE(child) << child.error().ToString();
  ASSERT_EQ(::write(child->stdin_write.get(), "hello\n", 6), 6);
  child->stdin_write.Reset();
  EXPECT_EQ(ReadUntil(child->stdout_read.get(), "\n", 20000), "got:hello\n");
  EXPECT_EQ(ReadUntil(child->stderr_read.get(), "\n", 20000), "oops\n");
  auto status = child->init.Wait();
  ASSERT_TRUE(status && status->has_value());
  auto report = sandbox::ReadExitReport(*child);
  ASSERT_TRUE(report && report->has_value());
  EXPECT_TRUE((*report)->exited);
  EXPECT_EQ((*report)->code, 0);
  auto stats = sandbox::FinishLeaf(child->leaf, std::chrono::seconds(10));
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_NE(::access("/sys/fs/cgroup/mp-spawn/stdin-pipe", F_OK), 0) << "the leaf was not removed";
}

TEST_F(SpawnTest, PtyIsTheControllingTerminalWithTheRequestedSize) {
  auto req = runner_->BaseRequest(
      {"/bin/sh", "-c",
       "stty size; test -t 0 && echo tty-ok; read x; echo \"in:$x\"; ps -o stat= -p $$"});
  req.stdio = sandbox::StdioMode::kPty;
  req.pty_rows = 40;
  req.pty_cols = 132;
  auto child = sandbox::Spawn(runner_->root(), "pty", req);
  ASSERT_TRUE(child) << child.error().ToString();
  std::string out = ReadUntil(child->pty_master.get(), "tty-ok", 20000);
  EXPECT_NE(out.find("40 132"), std::string::npos) << out;
  ASSERT_EQ(::write(child->pty_master.get(), "typed\n", 6), 6);
  out += ReadUntil(child->pty_master.get(), "in:typed", 20000);
  EXPECT_NE(out.find("in:typed"), std::string::npos) << out;
  // A resize reaches the session as SIGWINCH and a new size.
  struct winsize ws {};
  ws.ws_row = 50;
  ws.ws_col = 100;
  EXPECT_EQ(::ioctl(child->pty_master.get(), TIOCSWINSZ, &ws), 0);
  auto status = child->init.Wait();
  ASSERT_TRUE(status && status->has_value());
  (void)sandbox::FinishLeaf(child->leaf, std::chrono::seconds(10));
}

TEST_F(SpawnTest, RlimitsHostnameAndNamespaces) {
  RunResult r;
  auto req = runner_->BaseRequest(
      {"/bin/bash", "-c",
       "ulimit -c; ulimit -n; ulimit -u; hostname; cat /proc/self/cgroup; "
       "ip -o link 2>/dev/null | cut -d: -f2 | tr -d ' '; echo pid=$$; ls /tmp | wc -l"});
  req.rlimits.push_back({RLIMIT_NOFILE, 123, 123});
  auto result = runner_->Run(req);
  ASSERT_TRUE(result) << result.error().ToString();
  const std::string& out = result->out;
  EXPECT_EQ(result->exit_code(), 0) << out;
  EXPECT_NE(out.find("0\n123\n4096\nmonkeyproof\n0::/\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("eth"), std::string::npos) << "a host interface is visible: " << out;
  EXPECT_NE(out.find("pid=2\n"), std::string::npos) << "the command is pid 2, after init: " << out;
  EXPECT_NE(out.find("\n0\n"), std::string::npos) << "the private /tmp is empty: " << out;
}

TEST_F(SpawnTest, ExitStatusAndSignalAreReported) {
  auto exited = runner_->Run(runner_->BaseRequest({"/bin/sh", "-c", "exit 7"}));
  ASSERT_TRUE(exited) << exited.error().ToString();
  EXPECT_TRUE(exited->end.reported);
  EXPECT_EQ(exited->exit_code(), 7);
  auto signalled = runner_->Run(runner_->BaseRequest({"/bin/sh", "-c", "kill -TERM $$"}));
  ASSERT_TRUE(signalled) << signalled.error().ToString();
  EXPECT_TRUE(signalled->killed_by(SIGTERM));
  EXPECT_TRUE(signalled->end.stats.cpu_usage_usec.has_value());
  EXPECT_TRUE(signalled->end.stats.memory_peak_bytes.has_value());
  EXPECT_TRUE(signalled->end.stats.pids_peak.has_value());
}

TEST_F(SpawnTest, SignalToInitIsForwardedToTheCommand) {
  auto req = runner_->BaseRequest(
      {"/bin/sh", "-c",
       "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done"});
  auto child = sandbox::Spawn(runner_->root(), "forward", req);
  ASSERT_TRUE(child) << child.error().ToString();
  ASSERT_NE(ReadUntil(child->stdout_read.get(), "ready", 20000).find("ready"), std::string::npos);
  ASSERT_TRUE(child->init.SendSignal(SIGTERM));
  EXPECT_NE(ReadUntil(child->stdout_read.get(), "got-term", 20000).find("got-term"),
            std::string::npos);
  auto status = child->init.Wait();
  ASSERT_TRUE(status && status->has_value());
  auto report = sandbox::ReadExitReport(*child);
  ASSERT_TRUE(report && report->has_value());
  EXPECT_EQ((*report)->code, 3);
  (void)sandbox::FinishLeaf(child->leaf, std::chrono::seconds(10));
}

int RunShell(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(ExecRunnerTest, ExitsWithTheCommandStatusAndSaysWhyItKilled) {
  const std::string bin = MP_MONKEYPROOFD_PATH;
  const std::string root = " --cgroup-root /sys/fs/cgroup/mp-exec-test";
  std::string out;
  EXPECT_EQ(RunShell(bin + " exec" + root + " -- /bin/sh -c 'echo hi; exit 5'", &out), 5) << out;
  EXPECT_EQ(out, "hi\n");
  out.clear();
  EXPECT_EQ(RunShell(bin + " exec" + root + " --timeout 1 -- /bin/sleep 30", &out), 128 + SIGKILL)
      << out;
  EXPECT_NE(out.find("reason=timeout_wall"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunShell(bin + " exec" + root +
                         " --memory-max 32M -- /bin/sh -c 'x=$(head -c 200000000 /dev/zero | tr "
                         "\"\\0\" a); echo survived'",
                     &out),
            128 + SIGKILL)
      << out;
  EXPECT_NE(out.find("reason=oom"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunShell(bin + " exec" + root + " -- no-such-command-mp", &out), 127) << out;
  EXPECT_NE(out.find("exec no-such-command-mp: ENOENT"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunShell(bin + " exec --bogus -- true", &out), 2) << out;
  EXPECT_NE(out.find("unknown option \"--bogus\""), std::string::npos) << out;
}

}  // namespace
}  // namespace mp::testing

namespace mp::testing {
namespace {

// Every step of the child's setup sequence, made to fail once on purpose (the plan's
// test_fail_step hook, ECANCELED), reaches the caller as an error that names that step; the
// leaf is gone afterwards. A step that a refactoring dropped from the sequence, or whose
// failure lost its name on the way back, fails here.
TEST_F(SpawnTest, EachSetupStepsFailureNamesTheStep) {
  using sandbox::ChildStep;
  const ChildStep steps[] = {
      ChildStep::kSetsid,         ChildStep::kMountPrivate,      ChildStep::kChdirWorkspace,
      ChildStep::kHostname,       ChildStep::kLoopback,          ChildStep::kRlimit,
      ChildStep::kCapBoundingSet, ChildStep::kParentDeathSignal, ChildStep::kCloseFds,
      ChildStep::kNoNewPrivs,     ChildStep::kSeccomp,           ChildStep::kForkCommand,
      ChildStep::kExec,           ChildStep::kReportStarted,
  };
  int n = 0;
  for (const ChildStep step : steps) {
    SCOPED_TRACE(sandbox::ChildStepName(step));
    auto req = runner_->BaseRequest({"/bin/true"});
    req.test_fail_step = step;
    const std::string leaf = "step-fail-" + std::to_string(n++);
    auto child = sandbox::Spawn(runner_->root(), leaf, req);
    ASSERT_FALSE(child) << "the spawn succeeded although its step failed";
    EXPECT_EQ(child.error().errnum, ECANCELED) << child.error().ToString();
    EXPECT_EQ(child.error().ToString().rfind(sandbox::ChildStepName(step), 0), 0u)
        << "the error does not start with the step's name: " << child.error().ToString();
    EXPECT_NE(::access(("/sys/fs/cgroup/mp-spawn/" + leaf).c_str(), F_OK), 0)
        << "the leaf was not removed";
  }
  // The control: the same request without the hook runs.
  auto ok = sandbox::Spawn(runner_->root(), "step-fail-none", runner_->BaseRequest({"/bin/true"}));
  ASSERT_TRUE(ok) << ok.error().ToString();
  (void)ok->init.Wait();
  EXPECT_TRUE(sandbox::FinishLeaf(ok->leaf, std::chrono::seconds(10)));
}

// A child that never reports is given up on at the start deadline, and the error names the
// step it stalled in.
TEST_F(SpawnTest, AStalledSetupTimesOutNamingTheStep) {
  auto req = runner_->BaseRequest({"/bin/true"});
  req.stall_before_start_report = true;
  req.start_timeout = std::chrono::milliseconds(3000);
  auto child = sandbox::Spawn(runner_->root(), "stalled", req);
  ASSERT_FALSE(child);
  EXPECT_NE(child.error().ToString().find("did not finish within 3000 ms"), std::string::npos)
      << child.error().ToString();
  EXPECT_NE(child.error().ToString().find("stalled in step: report started"), std::string::npos)
      << child.error().ToString();
  EXPECT_NE(::access("/sys/fs/cgroup/mp-spawn/stalled", F_OK), 0) << "the leaf was not removed";
}

}  // namespace
}  // namespace mp::testing
