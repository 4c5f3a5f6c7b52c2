// monkeyproofd with session_uid_range: two live sessions run as two different ids of the
// range (the control, session_uid_range = off, runs both as the policy's run_as), and a range
// that overlaps /etc/subuid stops the start with a message naming the overlap. The workspace
// is on ext4 (loop), which the kernel can idmap. Runs in the test VM.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "control_client.h"
#include "proc_watch.h"

namespace mp::testing {
namespace {

const std::string kDaemon = MP_MONKEYPROOFD_PATH;
const std::string kBase = "/var/tmp/mp-ids-daemon-test";
const std::string kExt4 = kBase + "/ext4";
const std::string kRoot = kExt4 + "/ws";
const std::string kCgroup = "/sys/fs/cgroup/mp-ids-daemon-test";
const std::string kLeaves = kCgroup + "/sessions";

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The real uid of `pid` (/proc/PID/status), or -1.
long RealUid(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Uid:", 0) == 0) return std::stol(line.substr(4));
  }
  return -1;
}

class Daemon {
 public:
  explicit Daemon(const std::string& extra_conf) {
    if (std::system(("umount " + kExt4 + " 2>/dev/null; rm -rf " + kBase).c_str()) != 0) {
    }
    ok_ = std::system(("mkdir -p " + kExt4 + " && truncate -s 32M " + kBase +
                       "/img && mkfs.ext4 -q -F " + kBase + "/img && mount -o loop " + kBase +
                       "/img " + kExt4 + " && mkdir -p " + kRoot + "/w " + kBase +
                       "/policies && chown 65534:65534 " + kRoot + "/w")
                          .c_str()) == 0;
    std::ofstream(kBase + "/policies/exec.json") << R"({
      "description": "test exec", "type": "exec", "command": [],
      "run_as": {"user": "nobody"},
      "workspace_roots": [")" + kRoot + R"("], "default_workspace": ")" +
                                                        kRoot + R"(/w",
      "env": {"set": {"PATH": "/usr/bin:/bin"}}})";
    std::ofstream(kBase + "/monkeyproof.conf")
        << "kill_grace_ms = 500\napi_user = root\nfd_store = off\n"
        << extra_conf;
  }
  ~Daemon() {
    Stop();
    if (std::system(("umount " + kExt4 + " 2>/dev/null").c_str()) != 0) {
    }
  }
  bool ok() const { return ok_; }
  void Start() {
    pid_ = ::fork();
    if (pid_ != 0) return;
    const int log = ::open((kBase + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(log, 2);
    ::execl(kDaemon.c_str(), kDaemon.c_str(), "--config", (kBase + "/monkeyproof.conf").c_str(),
            "--state-dir", (kBase + "/state").c_str(), "--socket",
            (kBase + "/run/control.sock").c_str(), "--cgroup-root", kCgroup.c_str(), "--policies",
            (kBase + "/policies").c_str(), "--audit-log", (kBase + "/audit.log").c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Waits for the daemon to exit by itself; its status, or -1 after 20 s.
  int WaitExit() {
    for (int i = 0; i < 200; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      ::usleep(100000);
    }
    return -1;
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  std::string socket() const { return kBase + "/run/control.sock"; }
  static std::string Log() { return Slurp(kBase + "/daemon.log"); }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
};

// The uids the processes of two concurrent sleepers run as.
std::pair<std::set<long>, std::set<long>> TwoSessionsUids(Daemon& daemon) {
  auto c = ControlClient::Connect(daemon.socket());
  EXPECT_TRUE(c) << c.error().ToString() << Daemon::Log();
  if (!c) return {};
  std::vector<std::string> ids;
  for (const char* task : {"sleep 1711 & wait", "sleep 1712 & wait"}) {
    wire::SpawnRequest req;
    req.task = task;
    req.client = "test";
    auto r = c->Call(req);
    EXPECT_TRUE(r && r->ok()) << (r ? "error response" : r.error().ToString()) << Daemon::Log();
    if (!r || !r->ok()) return {};
    ids.push_back(std::get<wire::SessionInfo>(r->body).id);
  }
  std::set<long> uids[2];
  for (size_t i = 0; i < 2; ++i) {
    // Once the sleeper runs, the session's setup is over: every process left is the session's.
    const std::string sleeper = i == 0 ? "sleep 1711" : "sleep 1712";
    EXPECT_TRUE(WaitFor(
        [&] {
          const auto procs = LeafProcesses(kLeaves + "/" + ids[i]).value_or(std::vector<pid_t>{});
          return std::any_of(procs.begin(), procs.end(),
                             [&](pid_t p) { return Cmdline(p) == sleeper; });
        },
        std::chrono::seconds(30)))
        << sleeper << " never ran";
    for (pid_t p : LeafProcesses(kLeaves + "/" + ids[i]).value_or(std::vector<pid_t>{})) {
      const long uid = RealUid(p);
      if (uid >= 0) uids[i].insert(uid);  // -1: it exited between the listing and the read
    }
  }
  return {uids[0], uids[1]};
}

TEST(SessionIdsDaemonTest, TwoLiveSessionsRunAsTwoIdsOfTheRange) {
  Daemon daemon("session_uid_range = 300000-300099\n");
  ASSERT_TRUE(daemon.ok()) << "could not mount ext4 (loop) at " << kExt4;
  daemon.Start();
  const auto [a, b] = TwoSessionsUids(daemon);
  const auto text = [](const std::set<long>& s) {
    std::string t;
    for (long u : s) t += std::to_string(u) + " ";
    return t;
  };
  ASSERT_EQ(a.size(), 1u) << "one session, one uid; got " << text(a);
  ASSERT_EQ(b.size(), 1u) << text(b);
  EXPECT_GE(*a.begin(), 300000);
  EXPECT_LE(*a.begin(), 300099);
  EXPECT_GE(*b.begin(), 300000);
  EXPECT_LE(*b.begin(), 300099);
  EXPECT_NE(*a.begin(), *b.begin());
}

TEST(SessionIdsDaemonTest, ControlWithoutARangeBothSessionsShareRunAs) {
  Daemon daemon("session_uid_range = off\n");
  ASSERT_TRUE(daemon.ok()) << "could not mount ext4 (loop) at " << kExt4;
  daemon.Start();
  const auto [a, b] = TwoSessionsUids(daemon);
  EXPECT_EQ(a, (std::set<long>{65534}));
  EXPECT_EQ(b, (std::set<long>{65534}));
}

TEST(SessionIdsDaemonTest, ARangeOverlappingSubuidStopsTheStart) {
  const std::string old = Slurp("/etc/subuid");
  std::ofstream("/etc/subuid", std::ios::app) << "mp-ids-test:300000:100\n";
  Daemon daemon("session_uid_range = 300050-300149\n");
  daemon.Start();
  const int status = daemon.WaitExit();
  std::ofstream("/etc/subuid", std::ios::trunc) << old;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status;
  EXPECT_NE(Daemon::Log().find("/etc/subuid gives mp-ids-test 300000-300099"), std::string::npos)
      << Daemon::Log();
}

}  // namespace
}  // namespace mp::testing
