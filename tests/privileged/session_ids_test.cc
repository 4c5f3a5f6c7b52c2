// Per-session ids in the sandbox (issue 13): a workspace mounted idmapped keeps the owner's
// files usable by the next session whatever uid each runs as, a file system the kernel cannot
// idmap is refused at spawn, and per-uid kernel pools (RLIMIT_NPROC, ptys through devpts
// max=) no longer cross sessions. Each protection has its control: the same probe without
// it shows the failure. Needs ext4 and loop (loaded in the test VM) and mkfs.ext4.
#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "common/scope_guard.h"
#include "sandbox_runner.h"

namespace mp::testing {
namespace {

constexpr uid_t kOwner = 3000;  // the workspace's owner on disk (no user entry needed)

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

int Sh(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

class SessionIdsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    runner_ = new SandboxRunner("mp-ids");
    base_ = "/var/tmp/mp-ids-" + std::to_string(::getpid());
    ext4_ = base_ + "/ext4";
    tmpfs_ = base_ + "/tmpfs";
    const std::string img = base_ + "/ext4.img";
    ok_ = Sh("mkdir -p " + ext4_ + " " + tmpfs_ + " && truncate -s 64M " + img +
             " && mkfs.ext4 -q -F " + img + " && mount -o loop " + img + " " + ext4_ +
             " && mount -t tmpfs -o size=16M tmpfs " + tmpfs_) == 0;
  }
  static void TearDownTestSuite() {
    (void)Sh("umount " + ext4_ + " " + tmpfs_ + " 2>/dev/null; rm -rf " + base_);
    delete runner_;
    runner_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(ok_) << "could not mount ext4 (loop) and tmpfs below " << base_;
  }

  // A directory owned by kOwner, mode 0755: only the owner may write it.
  static std::string OwnedDir(const std::string& parent, const std::string& name) {
    const std::string d = parent + "/" + name;
    EXPECT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
    EXPECT_EQ(::chown(d.c_str(), kOwner, kOwner), 0) << d;
    return d;
  }

  // The runner's base request, as `uid` (gid the same) in `ws`, idmapped to kOwner or not.
  static sandbox::SpawnRequest As(uid_t uid, const std::string& ws, bool idmap,
                                  std::vector<std::string> argv) {
    sandbox::SpawnRequest r = runner_->BaseRequest(std::move(argv));
    r.binds = {{ws, ws, sandbox::BindMode::kReadWrite, idmap}};
    r.workspace = ws;
    r.env = {"PATH=/usr/bin:/bin", "HOME=" + ws};
    r.uid = uid;
    r.gid = uid;
    if (idmap) r.idmap_owner = sandbox::IdmapOwner{kOwner, kOwner};
    return r;
  }

  static SandboxRunner* runner_;
  static std::string base_, ext4_, tmpfs_;
  static bool ok_;
};
SandboxRunner* SessionIdsTest::runner_ = nullptr;
std::string SessionIdsTest::base_, SessionIdsTest::ext4_, SessionIdsTest::tmpfs_;
bool SessionIdsTest::ok_ = false;

TEST_F(SessionIdsTest, IdmappedWorkspaceFilesBelongToTheOwnerAndServeTheNextSession) {
  const std::string ws = OwnedDir(ext4_, "ws-idmap");
  auto a = runner_->Run(
      As(200001, ws, true, {"/bin/sh", "-c", "id -u; echo a > f && stat -c %u:%g f . && mkdir d"}));
  ASSERT_TRUE(a) << a.error().ToString();
  EXPECT_EQ(a->exit_code(), 0) << a->out;
  // Inside, the session sees its own uid on what it wrote and on the owner's directory.
  EXPECT_EQ(a->out, "200001\n200001:200001\n200001:200001\n");
  struct stat st {};
  ASSERT_EQ(::stat((ws + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kOwner);
  EXPECT_EQ(st.st_gid, kOwner);
  ASSERT_EQ(::stat((ws + "/d").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kOwner);

  // The next session, another uid, changes the file and the directory.
  auto b =
      runner_->Run(As(200002, ws, true, {"/bin/sh", "-c", "echo b >> f && cat f && touch d/x"}));
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_EQ(b->exit_code(), 0) << b->out;
  EXPECT_EQ(b->out, "a\nb\n");

  // Control: the same session without the idmapped mount cannot use the owner's files.
  auto c = runner_->Run(
      As(200003, ws, false,
         {"/bin/sh", "-c", "echo c >> f || echo refused-f; touch g || echo refused-g"}));
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_NE(c->out.find("refused-f"), std::string::npos) << c->out;
  EXPECT_NE(c->out.find("refused-g"), std::string::npos) << c->out;
  EXPECT_EQ(ReadFile(ws + "/f"), "a");
}

TEST_F(SessionIdsTest, WorkspaceOnAFileSystemThatCannotBeIdmappedIsRefusedAtSpawn) {
  const std::string ws = OwnedDir(tmpfs_, "ws-tmpfs");
  auto refused = runner_->Run(As(200004, ws, true, {"/bin/sh", "-c", "echo x > f"}));
  ASSERT_FALSE(refused) << "a tmpfs workspace was mounted idmapped: " << refused->out;
  EXPECT_NE(refused.error().what.find("tmpfs"), std::string::npos) << refused.error().ToString();
  EXPECT_NE(refused.error().what.find("cannot mount idmapped"), std::string::npos)
      << refused.error().ToString();
  EXPECT_NE(::access((ws + "/f").c_str(), F_OK), 0) << "the refused session wrote";

  // Control: without the idmap the session writes there, and the file is its ephemeral uid's,
  // not the owner's: the wrong ownership the refusal prevents.
  ASSERT_EQ(::chmod(ws.c_str(), 0777), 0);
  auto plain = runner_->Run(As(200004, ws, false, {"/bin/sh", "-c", "echo x > f"}));
  ASSERT_TRUE(plain) << plain.error().ToString();
  EXPECT_EQ(plain->exit_code(), 0) << plain->out;
  struct stat st {};
  ASSERT_EQ(::stat((ws + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 200004u);
}

// Session A (uid `hog`) fills RLIMIT_NPROC; returns it running.
sandbox::SpawnedChild FillNproc(SandboxRunner& runner, sandbox::SpawnRequest req,
                                const std::string& leaf) {
  req.rlimits = {{RLIMIT_NPROC, 12, 12}};
  auto child = sandbox::Spawn(runner.root(), leaf, req);
  EXPECT_TRUE(child) << child.error().ToString();
  if (!child) std::abort();
  const std::string out = ReadUntil(child->stdout_read.get(), "filled", 20000);
  EXPECT_NE(out.find("filled"), std::string::npos) << out;
  return std::move(*child);
}

// A private home seeded from a state dir whose files are the owner's, mode 0600 (an agent's
// login): a session with an id of its own reads them through the idmapped lower layer, writes
// its home, and the seed on disk is untouched. Control: the same home without the idmap
// (the seed by its host path) cannot be read by the session's uid.
TEST_F(SessionIdsTest, PrivateHomeSeedIsReadableThroughTheIdmap) {
  const std::string seed = OwnedDir(ext4_, "seed-home");
  WriteFile(seed + "/login.json", "owner-secret\n");
  ASSERT_EQ(::chown((seed + "/login.json").c_str(), kOwner, kOwner), 0);
  ASSERT_EQ(::chmod((seed + "/login.json").c_str(), 0600), 0);
  ASSERT_EQ(::chmod(seed.c_str(), 0700), 0);
  const std::string ws = OwnedDir(ext4_, "ws-home");
  for (const bool idmap : {true, false}) {
    SCOPED_TRACE(idmap ? "home seed idmapped" : "control: seed by its host path");
    sandbox::SpawnRequest r = As(200011, ws, true,
                                 {"/bin/sh", "-c",
                                  "cat " + seed + "/login.json && echo mine > " + seed +
                                      "/new && stat -c %u " + seed + "/login.json"});
    r.home = sandbox::HomeSpec{seed, seed, 1u << 20, idmap};
    auto a = runner_->Run(std::move(r));
    ASSERT_TRUE(a) << a.error().ToString();
    if (idmap) {
      EXPECT_EQ(a->exit_code(), 0) << a->out;
      EXPECT_EQ(a->out, "owner-secret\n200011\n");
    } else {
      EXPECT_NE(a->exit_code(), 0) << a->out;
      EXPECT_EQ(a->out.find("owner-secret"), std::string::npos) << a->out;
    }
    // What the session wrote stayed in its upper layer.
    EXPECT_NE(::access((seed + "/new").c_str(), F_OK), 0);
    EXPECT_EQ(ReadFile(seed + "/login.json"), "owner-secret");
  }
}

TEST_F(SessionIdsTest, NprocExhaustedInOneSessionLeavesAnotherUidSpawning) {
  const std::string ws = OwnedDir(ext4_, "ws-nproc");
  // Forks sleepers until the kernel refuses (EAGAIN), says so, and holds them.
  const std::vector<std::string> hog = {"python3", "-c",
                                        "import os, time\n"
                                        "n = 0\n"
                                        "try:\n"
                                        "    while n < 100:\n"
                                        "        if os.fork() == 0:\n"
                                        "            time.sleep(300); os._exit(0)\n"
                                        "        n += 1\n"
                                        "except OSError as e:\n"
                                        "    print('filled', n, e.errno, flush=True)\n"
                                        "time.sleep(300)\n"};
  const std::vector<std::string> probe = {"/bin/sh", "-c", "sleep 0 & wait; echo ok"};
  auto end = [](sandbox::SpawnedChild& c) {
    (void)c.leaf.Kill();
    (void)c.init.Wait();
    (void)sandbox::FinishLeaf(c.leaf, std::chrono::seconds(10));
  };

  sandbox::SpawnedChild a = FillNproc(*runner_, As(200010, ws, true, hog), "nproc-hog");
  auto other = As(200011, ws, true, probe);
  other.rlimits = {{RLIMIT_NPROC, 12, 12}};
  auto b = runner_->Run(other);
  ASSERT_TRUE(b) << "a session of another uid could not spawn: " << b.error().ToString();
  EXPECT_EQ(b->exit_code(), 0) << b->out;
  EXPECT_EQ(b->out, "ok\n");

  // Control: a second session sharing the hog's uid cannot start or cannot fork.
  auto shared = As(200010, ws, true, probe);
  shared.rlimits = {{RLIMIT_NPROC, 12, 12}};
  auto c = runner_->Run(shared);
  EXPECT_FALSE(c && c->exit_code() == 0 && c->out == "ok\n")
      << "a session sharing the uid ran although the uid's RLIMIT_NPROC was exhausted";
  end(a);
}

// Session A opens terminals until the kernel refuses, reports how many, and holds them.
constexpr char kPtyHog[] =
    "import os, sys, time\n"
    "fds = []\n"
    "try:\n"
    "    while True: fds.append(os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY))\n"
    "except OSError as e:\n"
    "    print('held', len(fds), e.errno, flush=True)\n"
    "time.sleep(300)\n";
constexpr char kPtyProbe[] =
    "import os\n"
    "try:\n"
    "    os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY); print('ok')\n"
    "except OSError as e:\n"
    "    print('refused', e.errno)\n";

TEST_F(SessionIdsTest, PtyCapKeepsOneSessionFromTakingEveryTerminal) {
  // Leave 24 terminals for every devpts instance but the host's (pty_count must stay below
  // kernel.pty.max minus kernel.pty.reserve), so that the control can exhaust them.
  const std::string max_path = "/proc/sys/kernel/pty/max";
  const std::string old_max = ReadFile(max_path);
  const long reserve = std::stol(ReadFile("/proc/sys/kernel/pty/reserve"));
  const long nr = std::stol(ReadFile("/proc/sys/kernel/pty/nr"));
  WriteFile(max_path, std::to_string(reserve + nr + 24));
  ScopeGuard restore([&] { WriteFile(max_path, old_max); });
  const std::string ws = OwnedDir(ext4_, "ws-pty");
  auto end = [](sandbox::SpawnedChild& c) {
    (void)c.leaf.Kill();
    (void)c.init.Wait();
    (void)sandbox::FinishLeaf(c.leaf, std::chrono::seconds(10));
  };
  auto run_pair = [&](uint32_t pty_max,
                      const std::string& tag) -> std::pair<std::string, std::string> {
    auto hog_req = As(200020, ws, true, {"python3", "-c", kPtyHog});
    hog_req.pty_max = pty_max;
    auto hog = sandbox::Spawn(runner_->root(), "pty-hog-" + tag, hog_req);
    EXPECT_TRUE(hog) << hog.error().ToString();
    if (!hog) return {};
    const std::string held = ReadUntil(hog->stdout_read.get(), "\n", 30000);
    auto probe_req = As(200021, ws, true, {"python3", "-c", kPtyProbe});
    probe_req.pty_max = pty_max;
    auto probe = runner_->Run(probe_req);
    end(*hog);
    EXPECT_TRUE(probe) << probe.error().ToString();
    return {held, probe ? probe->out : ""};
  };

  const auto [capped_held, capped_probe] = run_pair(8, "capped");
  EXPECT_EQ(capped_held, "held 8 28\n");  // ENOSPC at the session's own max=
  EXPECT_EQ(capped_probe, "ok\n");

  // Control: without max= the first session takes every terminal, and the second gets none.
  const auto [open_held, open_probe] = run_pair(0, "open");
  EXPECT_NE(open_held.find("held"), std::string::npos) << open_held;
  EXPECT_EQ(open_probe, "refused 28\n") << "held: " << open_held;
}

}  // namespace
}  // namespace mp::testing
