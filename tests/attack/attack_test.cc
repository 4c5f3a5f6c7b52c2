// Attack suite: each test runs mp_probe inside the sandbox and asserts the
// escape is BLOCKED, then runs it once with the relevant protection removed
// and asserts the probe reports ESCAPED — so a probe that cannot detect its
// escape fails here instead of passing silently.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "proc_watch.h"
#include "sandbox_runner.h"
#include "staged_probe.h"

namespace mp::testing {
namespace {

constexpr int kEscaped = 10;
constexpr int kBlocked = 20;

std::string RandomToken() {
  std::random_device rd;
  return "mp" + std::to_string(rd()) + std::to_string(rd());
}

class AttackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { runner_ = new SandboxRunner("mp-attack"); }
  static void TearDownTestSuite() {
    delete runner_;
    runner_ = nullptr;
  }

  sandbox::SpawnRequest Probe(std::vector<std::string> args) {
    args.insert(args.begin(), StagedProbe());
    return runner_->BaseRequest(std::move(args));
  }

  // Runs and returns the probe's exit code; prints its output on failure.
  int Outcome(const sandbox::SpawnRequest& req, RunResult* out = nullptr) {
    auto r = runner_->Run(req);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r) return -1;
    if (out != nullptr) *out = *r;
    last_output_ = r->out;
    return r->exit_code();
  }

  void ExpectBlocked(const sandbox::SpawnRequest& req) {
    EXPECT_EQ(Outcome(req), kBlocked) << last_output_;
  }
  void ExpectEscaped(const sandbox::SpawnRequest& req) {
    EXPECT_EQ(Outcome(req), kEscaped) << "control run did not detect the escape: " << last_output_;
  }

  // Root with every capability and the host's ids: isolates what seccomp alone stops.
  static void AsRootWithCaps(sandbox::SpawnRequest& r) {
    r.unsafe.keep_ids = true;
    r.unsafe.keep_capabilities = true;
  }

  static SandboxRunner* runner_;
  std::string last_output_;
};
SandboxRunner* AttackTest::runner_ = nullptr;

std::string MakeTempDir(const char* tag, mode_t mode) {
  std::string d = std::string("/opt/mp-attack-") + tag + "-" + std::to_string(::getpid());
  ::mkdir(d.c_str(), mode);
  ::chmod(d.c_str(), mode);
  return d;
}

TEST_F(AttackTest, ReadRootOnlyFile) {
  const std::string secret = MakeTempDir("secret", 0755) + "/secret";
  { std::ofstream(secret) << "top secret\n"; }
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  ExpectBlocked(Probe({"read-file", secret}));
  auto control = Probe({"read-file", secret});
  control.unsafe.keep_ids = true;
  ExpectEscaped(control);
}

TEST_F(AttackTest, WriteOutsideWorkspace) {
  const std::string target = MakeTempDir("out", 0777) + "/written";
  ::unlink(target.c_str());
  ExpectBlocked(Probe({"write-file", target}));
  EXPECT_NE(::access(target.c_str(), F_OK), 0) << "the host file appeared";
  auto control = Probe({"write-file", target});
  control.unsafe.keep_host_filesystem = true;
  ExpectEscaped(control);
  ::unlink(target.c_str());
}

TEST_F(AttackTest, WriteThroughSymlinkPlantedInWorkspace) {
  const std::string outside = MakeTempDir("link-target", 0777);
  const std::string link = runner_->workspace() + "/escape";
  ::unlink(link.c_str());
  ASSERT_EQ(::symlink(outside.c_str(), link.c_str()), 0);
  ::unlink((outside + "/via-link").c_str());
  ExpectBlocked(Probe({"write-file", link + "/via-link"}));
  EXPECT_NE(::access((outside + "/via-link").c_str(), F_OK), 0) << "the host file appeared";
  auto control = Probe({"write-file", link + "/via-link"});
  control.unsafe.keep_host_filesystem = true;
  ExpectEscaped(control);
  ::unlink((outside + "/via-link").c_str());
  ::unlink(link.c_str());
}

TEST_F(AttackTest, WorkspaceIsWritableAndRootIsNot) {
  ASSERT_EQ(Outcome(Probe({"write-file", runner_->workspace() + "/ok"})), kEscaped)
      << "the workspace must be writable: " << last_output_;
  EXPECT_EQ(Outcome(Probe({"write-file", "/etc/mp-attack"})), kBlocked) << last_output_;
}

TEST_F(AttackTest, SeeOrSignalHostProcess) {
  // The victim runs as the sandbox's own uid, like another session would: only
  // the pid namespace stands between them.
  const pid_t victim = ::fork();
  if (victim == 0) {
    ::signal(SIGUSR1, SIG_IGN);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(1);
    for (;;) ::pause();
  }
  ASSERT_GT(victim, 0);
  // Only once it runs as the sandbox's uid does the test mean anything.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::ifstream status("/proc/" + std::to_string(victim) + "/status");
        for (std::string line; std::getline(status, line);) {
          if (line.rfind("Uid:", 0) == 0)
            return line.find("\t65534\t65534\t65534") != std::string::npos;
        }
        return false;
      },
      std::chrono::seconds(30)))
      << "the victim never switched to uid 65534";
  ExpectBlocked(Probe({"signal-pid", std::to_string(victim)}));
  auto control = Probe({"signal-pid", std::to_string(victim)});
  control.unsafe.share_pid_namespace = true;
  ExpectEscaped(control);
  ::kill(victim, SIGKILL);
  ::waitpid(victim, nullptr, 0);
}

TEST_F(AttackTest, Ptrace) {
  ExpectBlocked(Probe({"ptrace"}));
  auto control = Probe({"ptrace"});
  control.seccomp = nullptr;
  ExpectEscaped(control);
}

TEST_F(AttackTest, Mount) {
  ExpectBlocked(Probe({"mount"}));
  auto root_filtered = Probe({"mount"});
  AsRootWithCaps(root_filtered);
  ExpectBlocked(root_filtered);
  auto control = Probe({"mount"});
  AsRootWithCaps(control);
  control.seccomp = nullptr;
  ExpectEscaped(control);
}

TEST_F(AttackTest, LoadModule) {
  ExpectBlocked(Probe({"load-module"}));
  auto root_filtered = Probe({"load-module"});
  AsRootWithCaps(root_filtered);
  ExpectBlocked(root_filtered);
  auto control = Probe({"load-module"});
  AsRootWithCaps(control);
  control.seccomp = nullptr;
  ExpectEscaped(control);
}

TEST_F(AttackTest, UserNamespaceWhenForbidden) {
  ExpectBlocked(Probe({"userns"}));
  auto control = Probe({"userns"});
  control.seccomp = nullptr;
  ExpectEscaped(control);
}

TEST_F(AttackTest, TiocstiKeystrokeInjection) {
  for (const char* variant : {"tiocsti", "tiocsti-high"}) {
    SCOPED_TRACE(variant);
    ExpectBlocked(Probe({variant}));
    auto control = Probe({variant});
    control.seccomp = nullptr;
    ExpectEscaped(control);
  }
}

TEST_F(AttackTest, Tioclinux) {
  ExpectBlocked(Probe({"tioclinux"}));
  auto control = Probe({"tioclinux"});
  control.seccomp = nullptr;
  ExpectEscaped(control);
}

TEST_F(AttackTest, NetworkNoneReachesNothing) {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(s, 8), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string port = std::to_string(ntohs(a.sin_port));
  ExpectBlocked(Probe({"connect-tcp", port}));
  auto control = Probe({"connect-tcp", port});
  control.network = sandbox::NetworkMode::kHost;
  ExpectEscaped(control);
  ::close(s);
}

TEST_F(AttackTest, HiddenUnixSocket) {
  const std::string dir = "/run/mp-attack-" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/control.sock";
  ::unlink(path.c_str());
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  struct sockaddr_un a {};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0777), 0);
  ASSERT_EQ(::listen(s, 8), 0);
  // The allowlisted view has no /run at all (view_test); the hides are tested on the old view
  // (the host's whole root), where they are what stands between the session and the socket.
  ExpectBlocked(Probe({"connect-unix", path}));
  for (const std::string& hidden : {dir, path}) {
    SCOPED_TRACE(hidden);
    auto req = Probe({"connect-unix", path});
    req.unsafe.host_root_view = true;
    req.hide.push_back(hidden);
    ExpectBlocked(req);
  }
  auto control = Probe({"connect-unix", path});
  control.unsafe.host_root_view = true;
  ExpectEscaped(control);
  ::close(s);
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

TEST_F(AttackTest, ForkBombIsContainedByPidsMax) {
  RunResult r;
  auto req = Probe({"fork-bomb", "200"});
  req.limits.pids_max = 32;
  EXPECT_EQ(Outcome(req, &r), kBlocked) << last_output_;
  EXPECT_GE(r.end.stats.pids_max_events, 1u);
  // The host keeps running: it can still fork.
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  ASSERT_GT(p, 0);
  ::waitpid(p, nullptr, 0);
  auto control = Probe({"fork-bomb", "200"});
  control.limits.pids_max.reset();
  ExpectEscaped(control);
}

TEST_F(AttackTest, MemoryMaxOomKillsAndIsReported) {
  RunResult r;
  auto req = Probe({"allocate", "256"});
  req.limits.memory_max_bytes = 64ull << 20;
  Outcome(req, &r);
  EXPECT_TRUE(r.killed_by(SIGKILL)) << "exit " << r.exit_code() << ": " << last_output_;
  EXPECT_GE(r.end.stats.oom_kill_events, 1u);
  auto control = Probe({"allocate", "256"});
  control.limits.memory_max_bytes.reset();
  ExpectEscaped(control);
}

TEST_F(AttackTest, SetuidBinaryGivesNoPrivilege) {
  const std::string copy = MakeTempDir("suid", 0755) + "/probe-suid";
  ASSERT_EQ(std::system(("cp '" + StagedProbe() + "' '" + copy + "'").c_str()), 0);
  ASSERT_EQ(::chown(copy.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(copy.c_str(), 04755), 0);
  ExpectBlocked(Probe({"exec-setuid", copy}));
  // nosuid on the view and no_new_privs each stop it; the control lifts both.
  auto only_nnp = Probe({"exec-setuid", copy});
  only_nnp.unsafe.keep_host_filesystem = true;
  ExpectBlocked(only_nnp);
  auto control = Probe({"exec-setuid", copy});
  control.unsafe.keep_host_filesystem = true;
  control.unsafe.no_new_privs_off = true;
  control.seccomp = nullptr;  // the kernel installs no filter without no_new_privs
  ExpectEscaped(control);
  ::unlink(copy.c_str());
}

TEST_F(AttackTest, LeaveTheCgroupLeaf) {
  ExpectBlocked(Probe({"leave-cgroup"}));
  auto control = Probe({"leave-cgroup"});
  AsRootWithCaps(control);
  control.unsafe.keep_host_filesystem = true;
  control.unsafe.share_cgroup_namespace = true;
  ExpectEscaped(control);
}

TEST_F(AttackTest, ReadSupervisorEnvironment) {
  const std::string secret = RandomToken();
  // A host process whose environment holds the secret, as the supervisor's would.
  const pid_t holder = ::fork();
  if (holder == 0) {
    // As the sandbox's uid, like another session's agent holding an API key.
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(1);
    const std::string env = "MP_ATTACK_SECRET=" + secret;
    char* const envp[] = {const_cast<char*>(env.c_str()), nullptr};
    char* const argv[] = {const_cast<char*>("sleep"), const_cast<char*>("600"), nullptr};
    ::execve("/bin/sleep", argv, envp);
    ::_exit(127);
  }
  ASSERT_GT(holder, 0);
  // Its environment holds the secret once it has exec'd.
  ASSERT_TRUE(WaitFor([&] { return Cmdline(holder) == "sleep 600"; }, std::chrono::seconds(30)))
      << "the holder never exec'd sleep";
  ExpectBlocked(Probe({"read-environ", secret}));
  auto control = Probe({"read-environ", secret});
  control.unsafe.share_pid_namespace = true;
  ExpectEscaped(control);
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
}

TEST_F(AttackTest, IoUring) {
  ExpectBlocked(Probe({"io-uring"}));
  auto control = Probe({"io-uring"});
  control.seccomp = nullptr;
  ExpectEscaped(control);
}

TEST_F(AttackTest, Bpf) {
  ExpectBlocked(Probe({"bpf"}));
  auto root_filtered = Probe({"bpf"});
  AsRootWithCaps(root_filtered);
  ExpectBlocked(root_filtered);
  auto control = Probe({"bpf"});
  AsRootWithCaps(control);
  control.seccomp = nullptr;
  ExpectEscaped(control);
}

// Counts host processes whose command line carries `token`.
int CountProcessesWith(const std::string& token) {
  int found = 0;
  DIR* d = ::opendir("/proc");
  while (const dirent* e = d != nullptr ? ::readdir(d) : nullptr) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmdline.find(token) != std::string::npos) ++found;
  }
  if (d != nullptr) ::closedir(d);
  return found;
}

// Waits for the probe's DAEMONIZED line, then runs `kill`.
auto AfterDaemonized(std::function<void(sandbox::SpawnedChild&)> kill) {
  return [kill](sandbox::SpawnedChild& child, std::string& out) {
    char buf[256];
    while (out.find("DAEMONIZED") == std::string::npos) {
      struct pollfd pfd = {child.stdout_read.get(), POLLIN, 0};
      if (::poll(&pfd, 1, 20000) <= 0) {
        ADD_FAILURE() << "no DAEMONIZED line within 20 s";
        break;
      }
      const ssize_t n = ::read(child.stdout_read.get(), buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    kill(child);
  };
}

TEST_F(AttackTest, SetsidDoubleForkCannotEscapeTheKill) {
  constexpr int kRepetitions = 100;
  for (int i = 0; i < kRepetitions; ++i) {
    const std::string token = RandomToken();
    auto r = runner_->Run(Probe({"daemonize-and-wait", token}),
                          AfterDaemonized([](sandbox::SpawnedChild& c) { (void)c.leaf.Kill(); }));
    ASSERT_TRUE(r) << r.error().ToString();
    ASSERT_NE(r->out.find("DAEMONIZED"), std::string::npos) << r->out;
    ASSERT_EQ(CountProcessesWith(token), 0) << "repetition " << i << ": a process survived";
  }
  // Control: in the host's pid namespace, killing only the direct child leaves the
  // double-forked daemon running — the probe's escape is real without cgroup.kill.
  const std::string token = RandomToken();
  auto control = Probe({"daemonize-and-wait", token});
  control.unsafe.share_pid_namespace = true;
  int survivors = -1;
  auto r = runner_->Run(control, AfterDaemonized([&](sandbox::SpawnedChild& c) {
                          (void)c.init.SendSignal(SIGKILL);
                          // Count once the init has died (its pidfd turns readable).
                          struct pollfd died = {c.init.fd(), POLLIN, 0};
                          EXPECT_EQ(::poll(&died, 1, 30000), 1) << "the init outlived SIGKILL";
                          survivors = CountProcessesWith(token);
                          (void)c.leaf.Kill();  // clean up for real
                        }));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_GE(survivors, 1) << "the control run should leave the daemon alive";
  EXPECT_EQ(CountProcessesWith(token), 0);
}

TEST_F(AttackTest, OtherWorkspacesUnderTheRootAreHidden) {
  // Two workspaces under one root: the root is hidden, only ours is bound back.
  const std::string root = MakeTempDir("wsroot", 0755);
  const std::string mine = root + "/mine", theirs = root + "/theirs";
  ::mkdir(mine.c_str(), 0777);
  ::mkdir(theirs.c_str(), 0777);
  ::chmod(mine.c_str(), 0777);
  { std::ofstream(theirs + "/.env") << "API_KEY=theirs\n"; }
  ASSERT_EQ(::chown((theirs + "/.env").c_str(), 65534, 65534), 0);
  auto req = Probe({"read-file", theirs + "/.env"});
  req.binds = {{mine, mine, sandbox::BindMode::kReadWrite}};
  req.workspace = mine;
  req.hide.push_back(root);
  ExpectBlocked(req);
  auto write_mine = Probe({"write-file", mine + "/ok"});
  write_mine.binds = req.binds;
  write_mine.workspace = mine;
  write_mine.hide.push_back(root);
  EXPECT_EQ(Outcome(write_mine), kEscaped)
      << "our own workspace must stay writable: " << last_output_;
  auto control = Probe({"read-file", theirs + "/.env"});
  control.binds = req.binds;
  control.workspace = mine;
  ExpectEscaped(control);
}

TEST_F(AttackTest, ReadOnlyMountBelowAWritableBindStaysReadOnly) {
  const std::string ro = runner_->workspace() + "/golden";
  ::mkdir(ro.c_str(), 0777);
  ASSERT_EQ(::chmod(ro.c_str(), 0777), 0);
  ASSERT_EQ(
      std::system(("mount -t tmpfs -o mode=0777 tmpfs '" + ro + "' && touch '" + ro +
                   "/file' && chmod 666 '" + ro + "/file' && mount -o remount,ro '" + ro + "'")
                      .c_str()),
      0);
  ExpectBlocked(Probe({"write-file", ro + "/file"}));
  auto control = Probe({"write-file", ro + "/file"});
  control.unsafe.keep_host_filesystem = true;
  EXPECT_EQ(Outcome(control), kBlocked) << "the host mount itself is read-only: " << last_output_;
  ASSERT_EQ(std::system(("umount '" + ro + "'").c_str()), 0);
  // Without the read-only mount the same write succeeds: the probe can see it.
  ExpectEscaped(Probe({"write-file", ro + "/file"}));
}

TEST_F(AttackTest, OddSocketFamiliesAreRefused) {
  // Each family is refused by the filter, and reached without it: the probe tells the
  // family's own answer (a socket, or EPERM for a non-root caller) from the filter's
  // EAFNOSUPPORT. AF_PACKET is built into Debian's kernel; AF_VSOCK (vsock.ko) and AF_ALG
  // (af_alg.ko) are modules the test VM loads at boot (tests/vm/fetch-kernel.sh), since
  // without them the kernel's own answer would be EAFNOSUPPORT too.
  struct Family {
    const char* number;
    const char* name;
  };
  const Family families[] = {{"40", "AF_VSOCK: not isolated by network namespaces on 6.1"},
                             {"38", "AF_ALG: the kernel crypto API"},
                             {"17", "AF_PACKET"}};
  for (const Family& f : families) {
    SCOPED_TRACE(f.name);
    ExpectBlocked(Probe({"socket-family", f.number}));
    auto control = Probe({"socket-family", f.number});
    control.seccomp = nullptr;
    ExpectEscaped(control);
  }
}

TEST_F(AttackTest, SpawnErrorsNameTheStep) {
  auto missing_bin = runner_->BaseRequest({"no-such-program-mp"});
  auto r = runner_->Run(missing_bin);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().ToString(), "exec no-such-program-mp: ENOENT (No such file or directory)");

  auto missing_mount = Probe({"whoami"});
  missing_mount.binds.push_back({"/nonexistent-mp", "/work", sandbox::BindMode::kReadOnly});
  r = runner_->Run(missing_mount);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().ToString(),
            "mount source \"/nonexistent-mp\": ENOENT (No such file or directory)");

  // A target's missing directories are made in the view's root tmpfs, but not inside the
  // host's read-only /usr: there a missing target is an error naming it.
  auto bad_target = Probe({"whoami"});
  bad_target.binds.push_back({"/usr", "/usr/nonexistent-mp/usr", sandbox::BindMode::kReadOnly});
  r = runner_->Run(bad_target);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().ToString(),
            "mount /usr/nonexistent-mp/usr: ENOENT (No such file or directory)");

  auto root_user = Probe({"whoami"});
  root_user.uid = 0;
  r = runner_->Run(root_user);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("uid 0 is refused"), std::string::npos) << r.error().what;
}

TEST_F(AttackTest, RunsAsNobodyWithNoCapabilities) {
  RunResult r;
  auto req =
      runner_->BaseRequest({"/bin/sh", "-c",
                            "id -u; grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status; grep "
                            "NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status"});
  ASSERT_EQ(Outcome(req, &r), 0) << r.out;
  EXPECT_NE(r.out.find("65534\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CapPrm:\t0000000000000000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CapEff:\t0000000000000000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CapBnd:\t0000000000000000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CapAmb:\t0000000000000000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NoNewPrivs:\t1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Seccomp:\t2"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace mp::testing
