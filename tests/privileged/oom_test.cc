// OOM on the host's side (issue 13). A host process outside the sessions' cgroup, at
// oom_score_adj 0, holds 45 % of the guest's available memory; two sessions, each under its own
// cap (40 %), then hold 35 % each: together more than the guest has. With the protections —
// the sessions' aggregate cap (ApplySessionsMemoryCap, 45 %) and a positive oom_score_adj —
// the kernel kills a session, whole (memory.oom.group: its init dies too), and the host process
// lives. Control, both protections removed: with the oom_score_adj the shipped unit used to hand
// down (-500) and no aggregate cap, the host process is the one killed. The sessions' cgroup is
// the daemon's: the one PrepareCgroupRoot makes below a configured root (<root>/sessions).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "sandbox/cgroup.h"
#include "sandbox_runner.h"
#include "staged_probe.h"

namespace mp::testing {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

uint64_t MeminfoKiB(const std::string& key) {
  std::ifstream f("/proc/meminfo");
  std::string name;
  uint64_t kib = 0;
  std::string unit;
  while (f >> name >> kib) {
    std::getline(f, unit);
    if (name == key + ":") return kib;
  }
  return 0;
}

bool WriteOomScoreAdj(pid_t pid, int value) {
  std::ofstream f("/proc/" + (pid == 0 ? std::string("self") : std::to_string(pid)) +
                  "/oom_score_adj");
  f << value;
  f.close();
  return static_cast<bool>(f);
}

// The host process: a plain child of the test at oom_score_adj 0, outside the sessions'
// cgroup, holding `mib` MiB of touched memory until killed.
class HostHog {
 public:
  explicit HostHog(uint64_t mib) {
    int ready[2];
    if (::pipe(ready) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(ready[0]);
      if (!WriteOomScoreAdj(0, 0)) ::_exit(2);
      const size_t size = mib << 20;
      auto* p = static_cast<char*>(
          ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (p == MAP_FAILED) ::_exit(3);
      for (size_t i = 0; i < size; i += 4096) p[i] = 1;
      (void)!::write(ready[1], "r", 1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char c = 0;
    ready_ = pid_ > 0 && ::read(ready[0], &c, 1) == 1;
    ::close(ready[0]);
  }
  ~HostHog() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool ready() const { return ready_; }
  // Killed, and by which signal (0: alive).
  int KilledBy() {
    if (reaped_) return signal_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      signal_ = WIFSIGNALED(status) ? WTERMSIG(status) : -1;
    }
    return signal_;
  }

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
  bool reaped_ = false;
  int signal_ = 0;
};

struct Session {
  std::optional<sandbox::SpawnedChild> child;
  std::string out;
  bool held() const { return out.find("held") != std::string::npos; }
};

class OomTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    runner_ = new SandboxRunner("mp-oom");
    auto root = sandbox::PrepareCgroupRoot(kRoot);
    if (root) {
      sessions_ = new sandbox::CgroupRoot(std::move(*root));
    } else {
      prepare_error_ = new std::string(root.error().ToString());
    }
  }
  static void TearDownTestSuite() {
    delete runner_;
    runner_ = nullptr;
    delete sessions_;
    sessions_ = nullptr;
    delete prepare_error_;
    prepare_error_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sessions_, nullptr) << "PrepareCgroupRoot(" << kRoot << "): " << *prepare_error_;
    // The test itself must outlive every OOM it causes.
    ASSERT_TRUE(WriteOomScoreAdj(0, -1000));
    available_mib_ = MeminfoKiB("MemAvailable") / 1024;
    ASSERT_GT(available_mib_, 1000u) << "the guest needs more memory (--mem)";
  }
  void TearDown() override {
    if (sessions_ != nullptr) (void)sandbox::ApplySessionsMemoryCap(*sessions_, std::nullopt);
  }

  uint64_t Share(unsigned percent) const { return available_mib_ * percent / 100; }

  // Starts `mp_probe allocate-and-hold` in a session capped at 40 %, holding 35 %.
  Session Start(const std::string& name, std::optional<int> oom_score_adj) {
    Session s;
    sandbox::SpawnRequest req =
        runner_->BaseRequest({StagedProbe(), "allocate-and-hold", std::to_string(Share(35))});
    req.limits.memory_max_bytes = Share(40) << 20;
    req.oom_score_adj = oom_score_adj;
    auto child = sandbox::Spawn(*sessions_, name, req);
    EXPECT_TRUE(child) << child.error().ToString();
    if (child) {
      child->stdin_write.Reset();
      s.child.emplace(std::move(*child));
    }
    return s;
  }

  // Reads the sessions' output until each holds its memory or has ended, or 180 s pass.
  static void Settle(Session& a, Session& b) {
    const auto deadline = Clock::now() + seconds(180);
    for (Session* s : {&a, &b}) {
      while (s->child && !s->held() && Clock::now() < deadline) {
        struct pollfd pfd = {s->child->stdout_read.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 500) <= 0) continue;
        char buf[256];
        const ssize_t n = ::read(s->child->stdout_read.get(), buf, sizeof buf);
        if (n <= 0) break;  // the session ended
        s->out.append(buf, static_cast<size_t>(n));
      }
    }
  }

  // Ends a session; returns how its init ended: 9 = SIGKILL (the whole leaf was killed), 0 =
  // still running until now.
  static int End(Session& s, bool* ran_until_now) {
    if (!s.child) return -1;
    struct pollfd pfd = {s.child->init.fd(), POLLIN, 0};
    *ran_until_now = ::poll(&pfd, 1, 0) == 0;
    (void)s.child->leaf.Kill();
    auto status = s.child->init.Wait();
    (void)sandbox::FinishLeaf(s.child->leaf, std::chrono::seconds(10));
    if (!status || !*status) return -1;
    return (*status)->exited ? 0 : (*status)->signal;
  }

  static constexpr char kRoot[] = "/sys/fs/cgroup/mp-oom-root";
  static SandboxRunner* runner_;          // the requests (workspace, seccomp)
  static sandbox::CgroupRoot* sessions_;  // <kRoot>/sessions: the session leaves' parent
  static std::string* prepare_error_;
  uint64_t available_mib_ = 0;
};
SandboxRunner* OomTest::runner_ = nullptr;
sandbox::CgroupRoot* OomTest::sessions_ = nullptr;
std::string* OomTest::prepare_error_ = nullptr;

// The two protections together: the cap trips first, inside the sessions' cgroup.
TEST_F(OomTest, SessionsOverTheAggregateCapLoseAWholeSessionAndTheHostProcessLives) {
  ASSERT_EQ(sessions_->path(), std::string(kRoot) + "/sessions");
  ASSERT_TRUE(sandbox::ApplySessionsMemoryCap(*sessions_, Share(45) << 20));
  HostHog host(Share(45));
  ASSERT_TRUE(host.ready());
  Session a = Start("oom-a", 500);
  Settle(a, a);
  ASSERT_TRUE(a.held()) << "the first session alone fits: " << a.out;
  Session b = Start("oom-b", 500);
  Settle(a, b);
  EXPECT_EQ(host.KilledBy(), 0) << "the host process was killed";
  bool a_ran = false;
  bool b_ran = false;
  const int a_end = End(a, &a_ran);
  const int b_end = End(b, &b_ran);
  EXPECT_NE(a_ran, b_ran) << "exactly one session must have been OOM-killed; a: " << a.out
                          << " b: " << b.out;
  // The killed one went whole: its init (which never allocates) died with it.
  EXPECT_EQ(a_ran ? b_end : a_end, SIGKILL);
  EXPECT_TRUE(a.held() || b.held()) << "the surviving session holds its memory";
}

// Control: no aggregate cap and the oom_score_adj the supervisor's unit used to hand down.
TEST_F(OomTest, ControlWithInheritedNegativeAdjAndNoCapTheHostProcessDies) {
  HostHog host(Share(45));
  ASSERT_TRUE(host.ready());
  Session a = Start("oom-c-a", -500);
  Settle(a, a);
  Session b = Start("oom-c-b", -500);
  Settle(a, b);
  EXPECT_EQ(host.KilledBy(), SIGKILL)
      << "the host process survived; a: " << a.out << " b: " << b.out;
  bool a_ran = false;
  bool b_ran = false;
  End(a, &a_ran);
  End(b, &b_ran);
  EXPECT_TRUE(a_ran && b_ran) << "both sessions kept running";
}

}  // namespace
}  // namespace mp::testing
