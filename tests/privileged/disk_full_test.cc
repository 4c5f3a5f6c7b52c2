// A full state file system in a real monkeyproofd in the test VM (issue 13, "Disk"): its state
// directory is a small loop-mounted ext4 with few inodes. With the blocks used up, and then
// with the inodes used up, a spawn is answered insufficient_storage naming the file system
// (never internal), leaves no session directory behind, and the supervisor keeps answering;
// once space is freed, the next spawn runs. A session that is printing when the disk fills
// runs on to its real exit code with every byte counted. Root in the VM only (the VM guard
// fails elsewhere).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <variant>

#include <gtest/gtest.h>

#include "control_client.h"
#include "proc_watch.h"

namespace mp::testing {
namespace {

const std::string kDaemon = MP_MONKEYPROOFD_PATH;
const std::string kBase = "/var/tmp/mp-disk-test";
const std::string kImage = "/var/tmp/mp-disk-test.img";
const std::string kState = kBase + "/state";  // the loop mount
const std::string kCgroup = "/sys/fs/cgroup/mp-disk-test";
const std::string kWorkspace = kBase + "/ws/w";

const char kPolicy[] = R"({
  "description": "disk test exec", "type": "exec", "command": [],
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-disk-test/ws"],
  "default_workspace": "/var/tmp/mp-disk-test/ws/w",
  "env": {"set": {"PATH": "/usr/bin:/bin"}}
})";

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

bool Sh(const std::string& command) { return std::system(command.c_str()) == 0; }

// How many session directories the state holds.
int SessionDirs() {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(kState + "/sessions", ec)) {
    if (e.path().filename().string().rfind("s-", 0) == 0) ++n;
  }
  return n;
}

class DiskFullTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    (void)Sh("umount " + kState + " 2>/dev/null; rm -rf " + kBase + " " + kImage);
    // 16 MiB with 128 inodes: each can be used up in a moment.
    mounted_ =
        Sh("mkdir -p " + kState + " " + kWorkspace + " " + kBase + "/policies && chown nobody " +
           kWorkspace + " && truncate -s 16M " + kImage + " && mkfs.ext4 -q -F -N 128 " + kImage +
           " && mount -o loop " + kImage + " " + kState);
    if (!mounted_) return;
    std::ofstream(kBase + "/policies/exec.json") << kPolicy;
    std::ofstream(kBase + "/monkeyproof.conf") << "api_user = root\nkill_grace_ms = 500\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open((kBase + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 2);
      ::execl(kDaemon.c_str(), kDaemon.c_str(), "--config", (kBase + "/monkeyproof.conf").c_str(),
              "--state-dir", kState.c_str(), "--socket", (kBase + "/run/control.sock").c_str(),
              "--cgroup-root", kCgroup.c_str(), "--policies", (kBase + "/policies").c_str(),
              "--audit-log", (kBase + "/audit.log").c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    if (mounted_) (void)Sh("umount " + kState);
  }
  void SetUp() override {
    ASSERT_TRUE(mounted_) << "could not make and mount a loop ext4 at " << kState
                          << " (mkfs.ext4, losetup and the loop and ext4 modules are needed)";
    ASSERT_GT(pid_, 0);
    auto c = ControlClient::Connect(kBase + "/run/control.sock");
    ASSERT_TRUE(c) << c.error().ToString() << "\n" << Slurp(kBase + "/daemon.log");
    client_.emplace(std::move(*c));
  }
  void TearDown() override { (void)Sh("rm -rf " + kState + "/filler*"); }

  // The answer to a spawn of `task`.
  wire::Response Spawn(const std::string& task) {
    wire::SpawnRequest req;
    req.preset = "exec";
    req.task = task;
    req.client = "test";
    req.cwd = kWorkspace;
    auto r = client_->Call(req);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : wire::Response{};
  }
  std::optional<wire::SessionInfo> WaitEnded(const std::string& id) {
    std::optional<wire::SessionInfo> last;
    WaitFor(
        [&] {
          auto got = client_->Call(wire::GetRequest{id});
          if (!got) return false;
          auto* info = std::get_if<wire::SessionInfo>(&got->body);
          if (info == nullptr) return false;
          last = *info;
          return info->end.has_value();
        },
        std::chrono::seconds(60));
    return last;
  }
  // A full file system refuses the spawn with insufficient_storage, naming it; the supervisor
  // answers on; no session directory is left.
  void ExpectRefused(const std::string& what) {
    const int dirs = SessionDirs();
    const wire::Response r = Spawn("echo never");
    const auto* e = std::get_if<wire::ErrorBody>(&r.body);
    ASSERT_NE(e, nullptr) << what << ": the spawn was accepted";
    EXPECT_EQ(e->code, wire::ErrorCode::kInsufficientStorage) << what << ": " << e->message;
    EXPECT_NE(e->message.find("insufficient storage"), std::string::npos) << e->message;
    EXPECT_NE(e->message.find(kState + " (ext4, "), std::string::npos) << e->message;
    EXPECT_EQ(SessionDirs(), dirs) << what << ": a session directory was left behind";
    auto list = client_->Call(wire::ListRequest{});
    ASSERT_TRUE(list) << list.error().ToString();
    EXPECT_TRUE(list->ok()) << what << ": the supervisor stopped answering";
  }
  // After the filler is gone, a spawn runs to its exit with its output.
  void ExpectRunsAgain() {
    ASSERT_TRUE(Sh("rm -rf " + kState + "/filler*"));
    const wire::Response r = Spawn("echo back");
    const auto* info = std::get_if<wire::SessionInfo>(&r.body);
    ASSERT_NE(info, nullptr) << "spawn refused after space was freed";
    auto ended = WaitEnded(info->id);
    ASSERT_TRUE(ended && ended->end) << "the session did not end";
    EXPECT_EQ(ended->end->exit_code, 0);
    auto out = client_->ReadAllOutput(info->id);
    ASSERT_TRUE(out) << out.error().ToString();
    EXPECT_EQ(*out, "back\n");
  }

  static bool mounted_;
  static pid_t pid_;
  std::optional<ControlClient> client_;
};
bool DiskFullTest::mounted_ = false;
pid_t DiskFullTest::pid_ = -1;

TEST_F(DiskFullTest, NoBlocksLeftIsInsufficientStorageNotInternal) {
  // Root fills the reserved blocks too, as the supervisor (root) could use them.
  (void)Sh("dd if=/dev/zero of=" + kState + "/filler bs=64k 2>/dev/null");
  ASSERT_TRUE(Sh("sync"));
  ExpectRefused("no blocks");
  ExpectRunsAgain();
}

TEST_F(DiskFullTest, NoInodesLeftIsInsufficientStorageNotInternal) {
  (void)Sh("mkdir " + kState + "/fillers && i=0; while touch " + kState +
           "/fillers/f$i 2>/dev/null; do i=$((i+1)); done");
  ASSERT_FALSE(Sh("touch " + kState + "/one-more 2>/dev/null")) << "inodes left";
  ExpectRefused("no inodes");
  ASSERT_TRUE(Sh("rm -rf " + kState + "/fillers"));
  ExpectRunsAgain();
}

TEST_F(DiskFullTest, ASessionPrintingWhenTheDiskFillsRunsToItsExitWithEveryByteCounted) {
  // 40 lines of 100,001 bytes, one every 0.1 s; the disk fills after the first few.
  const wire::Response r = Spawn(
      "for i in $(seq 1 40); do head -c 75000 /dev/zero | base64 -w 0; echo; "
      "sleep 0.1; done; exit 7");
  const auto* info = std::get_if<wire::SessionInfo>(&r.body);
  ASSERT_NE(info, nullptr) << "spawn refused";
  const std::string id = info->id;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto got = client_->Call(wire::GetRequest{id});
        auto* i = got ? std::get_if<wire::SessionInfo>(&got->body) : nullptr;
        return i != nullptr && i->output_bytes >= 300000;
      },
      std::chrono::seconds(60)));
  (void)Sh("dd if=/dev/zero of=" + kState + "/filler bs=64k 2>/dev/null");
  auto ended = WaitEnded(id);
  ASSERT_TRUE(ended && ended->end) << "the session did not end";
  EXPECT_EQ(ended->end->exit_code, 7) << "its real exit code";
  EXPECT_EQ(ended->output_bytes, 40u * 100001u) << "every byte took its offset";
  EXPECT_NE(Slurp(kBase + "/daemon.log").find("transcript:"), std::string::npos)
      << "the failed transcript write was not logged";
  auto list = client_->Call(wire::ListRequest{});
  ASSERT_TRUE(list && list->ok()) << "the supervisor stopped answering";
}

}  // namespace
}  // namespace mp::testing
