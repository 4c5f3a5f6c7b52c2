// A sandbox outliving the process that cloned it (SpawnRequest::outlive_supervisor), the
// ground a restarted supervisor stands on: the command keeps running, and its exit status
// reaches whoever holds the supervisor's end of the handshake socket, even after init was
// reaped by another process (systemd, for a supervisor restarted under it). The control:
// without the option the sandbox dies with its supervisor and no status is recorded.
// Runs in the test VM (root, cgroup v2).
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "sandbox/spawn.h"
#include "sandbox_runner.h"

namespace mp::testing {
namespace {

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// What a supervisor that exited left behind for the next one: its end of the handshake
// socket, init's pidfd, the stdin write end and the stdout read end.
struct Handover {
  pid_t init_pid = -1;
  UniqueFd report, pidfd, stdin_write, stdout_read;
};

// Forks a stand-in supervisor that spawns `argv` into leaf `leaf`, passes its fds to this
// process (SCM_RIGHTS) and exits. This process is a child subreaper meanwhile, so the
// orphaned init becomes its child, as it becomes systemd's under a service.
std::optional<Handover> SpawnFromAnExitingSupervisor(SandboxRunner& runner, const std::string& leaf,
                                                     std::vector<std::string> argv, bool outlive) {
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) return std::nullopt;
  UniqueFd mine(sp[0]), theirs(sp[1]);
  const pid_t helper = ::fork();
  if (helper < 0) return std::nullopt;
  if (helper == 0) {
    auto req = runner.BaseRequest(std::move(argv));
    req.outlive_supervisor = outlive;
    auto child = sandbox::Spawn(runner.root(), leaf, req);
    if (!child) {
      std::fprintf(stderr, "spawn: %s\n", child.error().ToString().c_str());
      ::_exit(1);
    }
    const int fds[4] = {child->report.get(), child->init.fd(), child->stdin_write.get(),
                        child->stdout_read.get()};
    const pid_t pid = child->init.pid();
    char control[CMSG_SPACE(sizeof fds)];
    std::memset(control, 0, sizeof control);
    struct iovec iov = {const_cast<pid_t*>(&pid), sizeof pid};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    std::memcpy(CMSG_DATA(c), fds, sizeof fds);
    ::_exit(::sendmsg(theirs.get(), &msg, 0) == static_cast<ssize_t>(sizeof pid) ? 0 : 2);
  }
  theirs.Reset();
  int status = 0;
  if (::waitpid(helper, &status, 0) != helper || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << "the stand-in supervisor failed (status " << status << ")";
    return std::nullopt;
  }
  Handover h;
  int fds[4] = {-1, -1, -1, -1};
  char control[CMSG_SPACE(sizeof fds)];
  struct iovec iov = {&h.init_pid, sizeof h.init_pid};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (::recvmsg(mine.get(), &msg, MSG_CMSG_CLOEXEC) != static_cast<ssize_t>(sizeof h.init_pid)) {
    ADD_FAILURE() << "no handover from the stand-in supervisor";
    return std::nullopt;
  }
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof fds)) {
    ADD_FAILURE() << "the handover carries no fds";
    return std::nullopt;
  }
  std::memcpy(fds, CMSG_DATA(c), sizeof fds);
  h.report = UniqueFd(fds[0]);
  h.pidfd = UniqueFd(fds[1]);
  h.stdin_write = UniqueFd(fds[2]);
  h.stdout_read = UniqueFd(fds[3]);
  return h;
}

bool ExitsWithin(int pidfd, int ms) {
  struct pollfd pfd = {pidfd, POLLIN, 0};
  return ::poll(&pfd, 1, ms) > 0;
}

// Reaps init as its reaper (systemd, here this process) would: what the pidfd's process
// reports, which is init's status, not the command's.
std::optional<sandbox::WaitStatus> ReapAsTheReaper(int pidfd) {
  siginfo_t info{};
  if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED) != 0) return std::nullopt;
  sandbox::WaitStatus s;
  s.exited = info.si_code == CLD_EXITED;
  (s.exited ? s.code : s.signal) = info.si_status;
  return s;
}

class OutliveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { runner_ = new SandboxRunner("mp-outlive"); }
  static void TearDownTestSuite() {
    delete runner_;
    runner_ = nullptr;
  }
  void SetUp() override { ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0); }
  void TearDown() override {
    ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    for (const char* leaf : {"outlives", "dies-with"}) {
      if (auto l = sandbox::CgroupLeaf::OpenExisting(runner_->root(), leaf)) {
        EXPECT_TRUE(sandbox::FinishLeaf(*l, std::chrono::seconds(10)));
      }
    }
  }
  static SandboxRunner* runner_;
};
SandboxRunner* OutliveTest::runner_ = nullptr;

TEST_F(OutliveTest, TheCommandsStatusReachesTheNextHolderAfterInitWasReapedElsewhere) {
  auto h = SpawnFromAnExitingSupervisor(*runner_, "outlives",
                                        {"/bin/sh", "-c", "read line; echo \"got:$line\"; exit 42"},
                                        /*outlive=*/true);
  ASSERT_TRUE(h);
  // Its supervisor is gone; the session runs on and still takes input.
  EXPECT_FALSE(ExitsWithin(h->pidfd.get(), 1000)) << "the sandbox died with its supervisor";
  const uint64_t before = NowMs();
  ASSERT_EQ(::write(h->stdin_write.get(), "late\n", 5), 5);
  ASSERT_TRUE(ExitsWithin(h->pidfd.get(), 20000)) << "the command did not end";
  const uint64_t after = NowMs();
  char out[64] = {};
  EXPECT_EQ(std::string(out, static_cast<size_t>(::read(h->stdout_read.get(), out, sizeof out))),
            "got:late\n");
  auto reaped = ReapAsTheReaper(h->pidfd.get());
  ASSERT_TRUE(reaped);
  EXPECT_TRUE(reaped->exited && reaped->code == 0)
      << "the reaper sees init's own status, not the command's 42";

  auto report = sandbox::ReadExitReport(h->report.get());
  ASSERT_TRUE(report) << report.error().ToString();
  ASSERT_TRUE(report->has_value()) << "no exit report after init was reaped elsewhere";
  EXPECT_TRUE((*report)->status.exited);
  EXPECT_EQ((*report)->status.code, 42);
  EXPECT_GE(static_cast<uint64_t>((*report)->exited_ms), before);
  EXPECT_LE(static_cast<uint64_t>((*report)->exited_ms), after + 1000);
}

// The other half of outliving: a session nobody can adopt any more (no process holds the
// supervisor's end of its handshake socket: the supervisor is gone and systemd's fd store was
// emptied, as on `systemctl stop` with systemd < 254) ends by itself, instead of running on
// unsupervised. The control is the test above: while the socket is held, it runs on.
TEST_F(OutliveTest, TheSandboxEndsOnceNobodyHoldsItsReportSocket) {
  // The command ignores SIGIO: init forwards a sent one to it, as any signal.
  auto h =
      SpawnFromAnExitingSupervisor(*runner_, "outlives", {"/bin/sh", "-c", "trap '' IO; sleep 600"},
                                   /*outlive=*/true);
  ASSERT_TRUE(h);
  EXPECT_FALSE(ExitsWithin(h->pidfd.get(), 1000)) << "the sandbox died while its socket was held";
  // A signal the session is sent (SIGIO from kill(), not the kernel's) does not end it.
  ASSERT_EQ(::kill(h->init_pid, SIGIO), 0);
  EXPECT_FALSE(ExitsWithin(h->pidfd.get(), 500)) << "a user's SIGIO ended the sandbox";
  h->report.Reset();
  ASSERT_TRUE(ExitsWithin(h->pidfd.get(), 10000))
      << "the sandbox outlived the last holder of its report socket";
  auto reaped = ReapAsTheReaper(h->pidfd.get());
  ASSERT_TRUE(reaped);
  EXPECT_TRUE(reaped->exited && reaped->code == 125) << "init left on its own, not killed";
  // The kernel kills the rest of the namespace when its init leaves: the leaf empties.
  auto leaf = sandbox::CgroupLeaf::OpenExisting(runner_->root(), "outlives");
  ASSERT_TRUE(leaf) << leaf.error().ToString();
  sandbox::CgroupStats stats;
  bool emptied = false;
  for (int i = 0; i < 100 && !emptied; ++i) {
    auto e = sandbox::LeafEmptied(*leaf, &stats);
    ASSERT_TRUE(e) << e.error().ToString();
    emptied = *e;
    if (!emptied) ::usleep(50 * 1000);
  }
  EXPECT_TRUE(emptied) << "processes of the session outlived its init";
}

// Control: the same without outlive_supervisor. The parent-death signal ends the sandbox
// when its supervisor exits; there is no command status to read, only init's SIGKILL.
TEST_F(OutliveTest, ControlWithoutTheOptionTheSandboxDiesWithItsSupervisor) {
  auto h =
      SpawnFromAnExitingSupervisor(*runner_, "dies-with", {"/bin/sh", "-c", "read line; exit 42"},
                                   /*outlive=*/false);
  ASSERT_TRUE(h);
  ASSERT_TRUE(ExitsWithin(h->pidfd.get(), 20000)) << "the sandbox outlived its supervisor";
  auto reaped = ReapAsTheReaper(h->pidfd.get());
  ASSERT_TRUE(reaped);
  EXPECT_FALSE(reaped->exited);
  EXPECT_EQ(reaped->signal, SIGKILL);
  auto report = sandbox::ReadExitReport(h->report.get());
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_FALSE(report->has_value()) << "a command status without a command end";
}

// The sessions unit's layout (packaging/deb/debian/monkeyproof-sessions.service): systemd
// starts the unit's anchor process in the unit's own cgroup, where cgroup v2 forbids enabling
// domain controllers for children; PrepareCgroupRoot moves it into the leaf "anchor" first.
// The control: enabling memory with the process left in place fails (EBUSY). The session
// leaves go below the cgroup "sessions" it makes there, and the sessions' aggregate cap lands on
// that one, never on the root (a unit's cgroup, whose own files systemd writes).
TEST(SessionsRootTest, AProcessInTheRootIsMovedIntoTheAnchorLeaf) {
  const std::string path = "/sys/fs/cgroup/mp-sessions-root";
  ASSERT_TRUE(::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST);
  const pid_t anchor = ::fork();
  ASSERT_GE(anchor, 0);
  if (anchor == 0) {
    ::pause();
    ::_exit(0);
  }
  // Runs however the test ends (an ASSERT returns early): the anchor must not outlive it.
  struct Cleanup {
    std::function<void()> run;
    ~Cleanup() { run(); }
  } cleanup{[&] {
    ::kill(anchor, SIGKILL);
    ::waitpid(anchor, nullptr, 0);
    ::rmdir((path + "/anchor").c_str());
    ::rmdir((path + "/sessions/probe").c_str());
    ::rmdir((path + "/sessions").c_str());
    ::rmdir(path.c_str());
  }};
  {
    UniqueFd procs(::open((path + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    const std::string pid = std::to_string(anchor);
    ASSERT_EQ(::write(procs.get(), pid.data(), pid.size()), static_cast<ssize_t>(pid.size()));
  }
  auto plain = sandbox::CgroupRoot::Open(path);
  ASSERT_TRUE(plain) << plain.error().ToString();
  // memory: a domain controller (pids and cpu alone may be enabled over processes, as
  // threaded controllers, and leave the children unusable for a session's leaf).
  auto refused = plain->EnableControllers({"memory"});
  EXPECT_FALSE(refused) << "controllers were enabled over a process in the root";
  if (!refused) {
    EXPECT_EQ(refused.error().errnum, EBUSY) << refused.error().ToString();
  }

  auto root = sandbox::PrepareCgroupRoot(path);
  ASSERT_TRUE(root) << root.error().ToString();
  EXPECT_EQ(root->path(), path + "/sessions");
  std::ifstream own("/proc/" + std::to_string(anchor) + "/cgroup");
  std::string line;
  std::getline(own, line);
  EXPECT_EQ(line, "0::/mp-sessions-root/anchor");
  std::ifstream control(path + "/cgroup.subtree_control");
  std::string enabled((std::istreambuf_iterator<char>(control)), std::istreambuf_iterator<char>());
  std::ifstream sessions_control(path + "/sessions/cgroup.subtree_control");
  std::string for_leaves((std::istreambuf_iterator<char>(sessions_control)),
                         std::istreambuf_iterator<char>());
  for (const char* c : {"memory", "pids", "cpu"}) {
    EXPECT_NE(enabled.find(c), std::string::npos) << enabled;
    EXPECT_NE(for_leaves.find(c), std::string::npos) << for_leaves;
  }
  // A leaf is made below "sessions", and the cap is written there, the root's own left alone.
  auto leaf = sandbox::CgroupLeaf::Create(*root, "probe");
  ASSERT_TRUE(leaf) << leaf.error().ToString();
  EXPECT_EQ(::access((path + "/sessions/probe/memory.max").c_str(), F_OK), 0);
  ASSERT_TRUE(sandbox::ApplySessionsMemoryCap(*root, 256ull << 20));
  const auto first_line = [](const std::string& file) {
    std::ifstream f(file);
    std::string l;
    std::getline(f, l);
    return l;
  };
  EXPECT_EQ(first_line(path + "/sessions/memory.max"), "268435456");
  EXPECT_EQ(first_line(path + "/memory.max"), "max") << "the cap was written to the root itself";
  // A restarted supervisor finds the root empty of processes: nothing to move, still fine.
  auto again = sandbox::PrepareCgroupRoot(path);
  EXPECT_TRUE(again) << again.error().ToString();
  (void)leaf->Remove();
}

}  // namespace
}  // namespace mp::testing
