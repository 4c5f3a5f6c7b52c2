// Proves the VM's cgroup v2 enforces what the sandbox relies on: memory.max
// OOM-kills inside a leaf and memory.events counts it; pids.max stops forks.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "sandbox/cgroup.h"

namespace mp::sandbox {
namespace {

constexpr char kCgroupMount[] = "/sys/fs/cgroup";

class CgroupLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto top = CgroupRoot::Open(kCgroupMount);
    ASSERT_TRUE(top) << top.error().ToString();
    auto enabled = top->EnableControllers({"memory", "pids", "cpu"});
    ASSERT_TRUE(enabled) << enabled.error().ToString();
    name_ = "mp-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    auto leaf = CgroupLeaf::Create(*top, name_);
    ASSERT_TRUE(leaf) << leaf.error().ToString();
    leaf_.emplace(std::move(*leaf));
  }

  void TearDown() override {
    if (!leaf_) return;
    auto killed = leaf_->Kill();
    EXPECT_TRUE(killed) << killed.error().ToString();
    for (int i = 0; i < 1000; ++i) {
      auto populated = leaf_->Populated();
      if (populated && !*populated) break;
      ::usleep(1000);
    }
    auto removed = leaf_->Remove();
    EXPECT_TRUE(removed) << removed.error().ToString();
  }

  // Forks a child that joins the leaf, then runs `body` and _exits with its value.
  template <typename F>
  pid_t ForkIntoLeaf(F body) {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) return -1;
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(ready[1]);
      char c;
      // Wait until the parent moved us, so every page we touch is charged to the leaf.
      if (::read(ready[0], &c, 1) != 1) ::_exit(120);
      ::_exit(body());
    }
    ::close(ready[0]);
    auto moved = leaf_->AddProcess(pid);
    EXPECT_TRUE(moved) << moved.error().ToString();
    if (::write(ready[1], "g", 1) != 1) ADD_FAILURE() << "write(ready): " << std::strerror(errno);
    ::close(ready[1]);
    return pid;
  }

  std::string name_;
  std::optional<CgroupLeaf> leaf_;
};

TEST_F(CgroupLimitsTest, MemoryMaxOomKillsAndIsCounted) {
  ASSERT_TRUE(leaf_->Write("memory.max", std::to_string(32u << 20)));
  ASSERT_TRUE(leaf_->Write("memory.swap.max", "0"));
  const pid_t pid = ForkIntoLeaf([] {
    constexpr size_t kSize = 256u << 20;
    char* p = static_cast<char*>(
        ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) return 121;
    for (size_t i = 0; i < kSize; i += 4096) p[i] = 1;  // fault every page in
    return 0;  // reaching here means the limit did not hold
  });
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status))
      << "child was not killed; exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  auto stats = leaf_->Stats();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_GE(stats->oom_kill_events, 1u);
  ASSERT_TRUE(stats->memory_peak_bytes.has_value());
  EXPECT_LE(*stats->memory_peak_bytes, 32u << 20);
}

TEST_F(CgroupLimitsTest, PidsMaxStopsForks) {
  ASSERT_TRUE(leaf_->Write("pids.max", "16"));
  // The child forks until refused and reports how many forks succeeded.
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  const pid_t pid = ForkIntoLeaf([&] {
    ::close(report[0]);
    int made = 0;
    int err = 0;
    for (int i = 0; i < 64; ++i) {
      const pid_t c = ::fork();
      if (c == 0) {
        ::pause();
        ::_exit(0);
      }
      if (c < 0) {
        err = errno;
        break;
      }
      ++made;
    }
    int msg[2] = {made, err};
    if (::write(report[1], msg, sizeof msg) != sizeof msg) return 122;
    return 0;
  });
  ::close(report[1]);
  ASSERT_GT(pid, 0);
  int msg[2] = {-1, -1};
  ASSERT_EQ(::read(report[0], msg, sizeof msg), static_cast<ssize_t>(sizeof msg));
  ::close(report[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(msg[0], 15) << "the leaf holds the forking child plus at most 15 more";
  EXPECT_EQ(msg[1], EAGAIN) << "fork past pids.max fails with EAGAIN";
  auto stats = leaf_->Stats();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_GE(stats->pids_max_events, 1u);
}

}  // namespace
}  // namespace mp::sandbox
