// monkeyproofd's session_host_loopback setting in the test VM: with deny (the default) the
// daemon attaches the loopback guard to its cgroup root at start, the guard stays attached
// after the daemon stops (sessions that outlive it stay guarded), and a restart replaces it
// instead of stacking a second copy; allow (the control) attaches nothing and detaches an
// earlier run's guard. The guard's effect on sessions is loopback_guard_test.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "sandbox/cgroup.h"
#include "sandbox/loopback_guard.h"

namespace mp::testing {
namespace {

const std::string kDaemon = MP_MONKEYPROOFD_PATH;
const std::string kBase = "/var/tmp/mp-guard-daemon-test";
const std::string kCgroup = "/sys/fs/cgroup/mp-guard-daemon-test";
// Where the daemon attaches the guard: the cgroup that holds every session leaf.
const std::string kSessions = kCgroup + "/" + sandbox::kSessionsCgroup;

const char kPolicy[] = R"({
  "description": "test exec", "type": "exec", "command": [],
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-guard-daemon-test/ws"],
  "default_workspace": "/var/tmp/mp-guard-daemon-test/ws/w",
  "env": {"set": {"PATH": "/usr/bin:/bin"}}
})";

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class LoopbackGuardDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(std::system(("rm -rf " + kBase).c_str()), 0);
    for (const std::string& d : {kBase, kBase + "/ws", kBase + "/ws/w", kBase + "/policies"}) {
      ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
    }
    std::ofstream(kBase + "/policies/exec.json") << kPolicy;
  }
  void TearDown() override {
    if (auto root = sandbox::CgroupRoot::Open(kSessions)) {
      (void)sandbox::DetachLoopbackGuard(root->dirfd());
    }
  }

  // Runs the daemon with `conf` until it is ready, then stops it with SIGTERM. False (with the
  // log in the failure) when it never became ready.
  bool RunOnce(const std::string& conf) {
    std::ofstream(kBase + "/monkeyproof.conf") << "api_user = root\n" << conf;
    const std::string log = kBase + "/daemon.log";
    (void)::unlink(log.c_str());
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 2);
      ::execl(kDaemon.c_str(), kDaemon.c_str(), "--config", (kBase + "/monkeyproof.conf").c_str(),
              "--state-dir", (kBase + "/state").c_str(), "--socket",
              (kBase + "/run/control.sock").c_str(), "--cgroup-root", kCgroup.c_str(), "--policies",
              (kBase + "/policies").c_str(), "--audit-log", (kBase + "/audit.log").c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    bool ready = false;
    for (int i = 0; i < 600 && !ready; ++i) {
      ready = ReadAll(log).find(": ready ") != std::string::npos;
      if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    if (!ready) ADD_FAILURE() << "monkeyproofd never became ready:\n" << ReadAll(log);
    return ready;
  }

  // How many guard programs are attached to the sessions' cgroup (detaching them).
  int TakeGuards() {
    auto root = sandbox::CgroupRoot::Open(kSessions);
    EXPECT_TRUE(root) << root.error().ToString();
    if (!root) return -1;
    auto n = sandbox::DetachLoopbackGuard(root->dirfd());
    EXPECT_TRUE(n) << n.error().ToString();
    return n ? *n : -1;
  }
};

TEST_F(LoopbackGuardDaemonTest, DenyAttachesOneCopyThatOutlivesTheDaemonAndItsRestarts) {
  ASSERT_TRUE(RunOnce(""));
  ASSERT_TRUE(RunOnce("session_host_loopback = deny\n"));
  EXPECT_EQ(TakeGuards(), 4) << "one program per hook, still attached after two runs";
}

TEST_F(LoopbackGuardDaemonTest, ControlAllowAttachesNothingAndRemovesAnEarlierGuard) {
  ASSERT_TRUE(RunOnce(""));
  ASSERT_TRUE(RunOnce("session_host_loopback = allow\n"));
  EXPECT_EQ(TakeGuards(), 0);
}

}  // namespace
}  // namespace mp::testing
