// monkeyproofd's session_host_loopback setting in the test VM: with deny (the default) the
// daemon attaches the loopback guard to its cgroup root at start, the guard stays attached
// after the daemon stops (sessions that outlive it stay guarded), and a restart replaces it
// instead of stacking a second copy; while it runs, its map of the host's addresses follows an
// address that comes and goes; allow (the control) attaches nothing and detaches an earlier
// run's guard. Likewise session_host_bind: ephemeral (the default) attaches the bind guard, one
// copy across restarts; any (the control) attaches none and detaches an earlier run's. The
// guards' effect on sessions is loopback_guard_test. SIGHUP makes the daemon read the port
// sysctls again and its bind guard's map follows (the control: before the signal it does not).
// So does a spawn request, before the manager sees it. A refresh of the loopback guard's map that
// fails (a test hook) leaves the map closed until a retry on the daemon's timer succeeds.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "sandbox/cgroup.h"
#include "sandbox/loopback_guard.h"

#include "control_client.h"

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

long Bpf(int cmd, bpf_attr* attr) { return ::syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

// The newest BPF map named `name` (the running daemon's), as an fd; -1 if none.
int NewestMap(const std::string& name) {
  int newest = -1;
  bpf_attr it{};
  while (Bpf(BPF_MAP_GET_NEXT_ID, &it) == 0) {
    it.start_id = it.next_id;
    bpf_attr get{};
    get.map_id = it.next_id;
    const long fd = Bpf(BPF_MAP_GET_FD_BY_ID, &get);
    if (fd < 0) continue;
    bpf_map_info info{};
    bpf_attr q{};
    q.info.bpf_fd = static_cast<uint32_t>(fd);
    q.info.info_len = sizeof info;
    q.info.info = reinterpret_cast<uint64_t>(&info);
    if (Bpf(BPF_OBJ_GET_INFO_BY_FD, &q) == 0 && std::string(info.name) == name) {
      if (newest >= 0) ::close(newest);
      newest = static_cast<int>(fd);
    } else {
      ::close(static_cast<int>(fd));
    }
  }
  return newest;
}
int NewestHostAddressMap() { return NewestMap("mp_host_addrs"); }

// The bind guard's rules in its map (key 0), or nullopt.
std::optional<sandbox::BindGuardRules> ReadRules(int map_fd) {
  sandbox::BindGuardRules rules;
  const uint32_t key = 0;
  bpf_attr look{};
  look.map_fd = static_cast<uint32_t>(map_fd);
  look.key = reinterpret_cast<uint64_t>(&key);
  look.value = reinterpret_cast<uint64_t>(&rules);
  if (Bpf(BPF_MAP_LOOKUP_ELEM, &look) != 0) return std::nullopt;
  return rules;
}

// Sets a sysctl file for one test and puts its old text back after.
class SysctlOverride {
 public:
  explicit SysctlOverride(const char* path) : path_(path) {
    std::ifstream in(path);
    ok_ = static_cast<bool>(std::getline(in, old_));
  }
  ~SysctlOverride() {
    if (ok_ && !Set(old_)) std::fprintf(stderr, "could not restore %s\n", path_);
  }
  bool ok() const { return ok_; }
  bool Set(const std::string& text) {
    std::ofstream out(path_);
    out << text << "\n";
    out.flush();
    return static_cast<bool>(out);
  }

 private:
  const char* path_;
  std::string old_;
  bool ok_ = false;
};

// Whether the map holds IPv4 address `v4` (keyed as ::ffff:a.b.c.d), polled for up to 5 s
// until it is `want`.
bool WaitForKey(int map_fd, const char* v4, bool want) {
  sandbox::HostPrefix key{};  // a whole address: the trie answers with its longest match
  key.prefixlen = 128;
  key.addr[10] = key.addr[11] = 0xff;
  EXPECT_EQ(inet_pton(AF_INET, v4, &key.addr[12]), 1);
  for (int i = 0; i < 50; ++i) {
    uint8_t value = 0;
    bpf_attr look{};
    look.map_fd = static_cast<uint32_t>(map_fd);
    look.key = reinterpret_cast<uint64_t>(&key);
    look.value = reinterpret_cast<uint64_t>(&value);
    if ((Bpf(BPF_MAP_LOOKUP_ELEM, &look) == 0) == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
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
      (void)sandbox::DetachBindGuard(root->dirfd());
    }
  }

  // Runs the daemon with `conf` until it is ready, runs `while_ready`, then stops it with
  // SIGTERM. False (with the log in the failure) when it never became ready.
  bool RunOnce(const std::string& conf, const std::function<void()>& while_ready = {}) {
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
    pid_ = pid;
    if (ready && while_ready) while_ready();
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    if (!ready) ADD_FAILURE() << "monkeyproofd never became ready:\n" << ReadAll(log);
    return ready;
  }

  pid_t pid_ = -1;  // the daemon RunOnce runs, while `while_ready` runs

  // How many guard programs are attached to the sessions' cgroup (detaching them).
  int TakeGuards() {
    auto root = sandbox::CgroupRoot::Open(kSessions);
    EXPECT_TRUE(root) << root.error().ToString();
    if (!root) return -1;
    auto n = sandbox::DetachLoopbackGuard(root->dirfd());
    EXPECT_TRUE(n) << n.error().ToString();
    return n ? *n : -1;
  }
  // How many bind guard programs are attached there (detaching them).
  int TakeBindGuards() {
    auto root = sandbox::CgroupRoot::Open(kSessions);
    EXPECT_TRUE(root) << root.error().ToString();
    if (!root) return -1;
    auto n = sandbox::DetachBindGuard(root->dirfd());
    EXPECT_TRUE(n) << n.error().ToString();
    return n ? *n : -1;
  }
};

TEST_F(LoopbackGuardDaemonTest, DenyAttachesOneCopyThatOutlivesTheDaemonAndItsRestarts) {
  ASSERT_TRUE(RunOnce(""));
  ASSERT_TRUE(RunOnce("session_host_loopback = deny\n"));
  EXPECT_EQ(TakeGuards(), 4) << "one program per hook, still attached after two runs";
}

TEST_F(LoopbackGuardDaemonTest, TheRunningDaemonsMapFollowsTheHostsAddresses) {
  constexpr char kAddress[] = "192.0.2.9";
  const std::string add = std::string("ip addr add ") + kAddress + "/32 dev lo";
  const std::string del = std::string("ip addr del ") + kAddress + "/32 dev lo";
  bool had_map = false, added = false, removed = false;
  ASSERT_TRUE(RunOnce("", [&] {
    const int map = NewestHostAddressMap();
    had_map = map >= 0;
    if (!had_map) return;
    const bool before = WaitForKey(map, kAddress, false);
    EXPECT_TRUE(before) << kAddress << " in the map before the host has it";
    EXPECT_EQ(std::system(add.c_str()), 0) << add;
    added = WaitForKey(map, kAddress, true);
    EXPECT_EQ(std::system(del.c_str()), 0) << del;
    removed = WaitForKey(map, kAddress, false);
    ::close(map);
  }));
  EXPECT_TRUE(had_map) << "no BPF map named mp_host_addrs while the daemon runs";
  EXPECT_TRUE(added) << "the map did not gain " << kAddress << " within 5 s";
  EXPECT_TRUE(removed) << "the map did not lose " << kAddress << " within 5 s";
}

TEST_F(LoopbackGuardDaemonTest, ControlAllowAttachesNothingAndRemovesAnEarlierGuard) {
  ASSERT_TRUE(RunOnce(""));
  ASSERT_TRUE(RunOnce("session_host_loopback = allow\n"));
  EXPECT_EQ(TakeGuards(), 0);
}

TEST_F(LoopbackGuardDaemonTest, BindGuardIsOnByDefaultOneCopyAcrossRestarts) {
  ASSERT_TRUE(RunOnce(""));
  EXPECT_NE(ReadAll(kBase + "/daemon.log").find("host-network sessions may bind port 0 and ports"),
            std::string::npos)
      << ReadAll(kBase + "/daemon.log");
  ASSERT_TRUE(RunOnce("session_host_bind = ephemeral\n"));
  EXPECT_EQ(TakeBindGuards(), 2) << "one program per hook (inet4/6 bind) after two runs";
}

TEST_F(LoopbackGuardDaemonTest, ControlBindAnyAttachesNothingAndRemovesAnEarlierGuard) {
  ASSERT_TRUE(RunOnce(""));
  ASSERT_TRUE(RunOnce("session_host_bind = any\n"));
  EXPECT_EQ(TakeBindGuards(), 0);
}

TEST_F(LoopbackGuardDaemonTest, SighupReadsThePortSysctlsAgainAndTheMapFollows) {
  SysctlOverride range_file("/proc/sys/net/ipv4/ip_local_port_range");
  SysctlOverride reserved_file("/proc/sys/net/ipv4/ip_local_reserved_ports");
  ASSERT_TRUE(range_file.ok() && reserved_file.ok());
  auto range = sandbox::EphemeralPortRange();
  ASSERT_TRUE(range) << range.error().ToString();
  const uint32_t narrowed_low = range->low + 1000u;
  const uint16_t reserved = static_cast<uint16_t>(range->low + 1300u);
  std::optional<sandbox::BindGuardRules> at_start, stale, after;
  bool sighup_sent = false;
  ASSERT_TRUE(RunOnce("", [&] {
    const int map = NewestMap("mp_bind_rules");
    if (map < 0) return;
    at_start = ReadRules(map);
    EXPECT_TRUE(range_file.Set(std::to_string(narrowed_low) + " " + std::to_string(range->high)));
    EXPECT_TRUE(reserved_file.Set(std::to_string(reserved)));
    // Control: the sysctls changed, nothing told the daemon; its map keeps the old rules.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    stale = ReadRules(map);
    sighup_sent = ::kill(pid_, SIGHUP) == 0;
    for (int i = 0; i < 50; ++i) {
      after = ReadRules(map);
      if (after && after->low == narrowed_low) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::close(map);
  }));
  const std::string log = ReadAll(kBase + "/daemon.log");
  ASSERT_TRUE(at_start) << "no BPF map named mp_bind_rules while the daemon runs\n" << log;
  ASSERT_TRUE(sighup_sent);
  EXPECT_EQ(at_start->low, range->low);
  EXPECT_EQ(sandbox::ReservedPortCount(*at_start), 0u);
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->low, range->low) << "the map changed without a re-read";
  ASSERT_TRUE(after);
  EXPECT_EQ(after->low, narrowed_low) << log;
  EXPECT_EQ(after->high, range->high);
  EXPECT_EQ(sandbox::ReservedPortCount(*after), 1u);
  EXPECT_NE(after->reserved[reserved / 8] & (1u << (reserved % 8)), 0u);
  EXPECT_NE(log.find("bind guard: the port sysctls changed (SIGHUP)"), std::string::npos) << log;
}

TEST_F(LoopbackGuardDaemonTest, AFailedRefreshFailsClosedAndIsRetriedUntilItSucceeds) {
  constexpr char kAddress[] = "192.0.2.10", kNotTheHosts[] = "198.51.100.9";
  const std::string add = std::string("ip addr add ") + kAddress + "/32 dev lo";
  const std::string del = std::string("ip addr del ") + kAddress + "/32 dev lo";
  // The first two refreshes after start fail: the third, a retry 1 s + 2 s later, succeeds.
  ASSERT_EQ(::setenv("MONKEYPROOFD_TEST_FAIL_LOOPBACK_REFRESHES", "2", 1), 0);
  bool had_map = false, open_before = false, closed = false, reopened = false, followed = false;
  const bool ran = RunOnce("", [&] {
    const int map = NewestHostAddressMap();
    had_map = map >= 0;
    if (!had_map) return;
    // Control: a current map does not hold an address that is not the host's.
    open_before = WaitForKey(map, kNotTheHosts, false);
    EXPECT_EQ(std::system(add.c_str()), 0) << add;
    closed = WaitForKey(map, kNotTheHosts, true);
    reopened = WaitForKey(map, kNotTheHosts, false);
    followed = WaitForKey(map, kAddress, true);
    EXPECT_EQ(std::system(del.c_str()), 0) << del;
    ::close(map);
  });
  ::unsetenv("MONKEYPROOFD_TEST_FAIL_LOOPBACK_REFRESHES");
  ASSERT_TRUE(ran);
  const std::string log = ReadAll(kBase + "/daemon.log");
  ASSERT_TRUE(had_map) << "no BPF map named mp_host_addrs while the daemon runs";
  EXPECT_TRUE(open_before) << kNotTheHosts << " in the map before any failure";
  EXPECT_TRUE(closed) << "the map did not fail closed within 5 s of a failed refresh\n" << log;
  EXPECT_TRUE(reopened) << "no retry put the table back within 5 s\n" << log;
  EXPECT_TRUE(followed) << "the retried refresh lacks " << kAddress;
  EXPECT_NE(log.find("the map fails closed"), std::string::npos) << log;
  EXPECT_NE(log.find("the map follows the host's addresses again"), std::string::npos) << log;
  const size_t first = log.find("the map fails closed");
  EXPECT_EQ(log.find("the map fails closed", first + 1), std::string::npos)
      << "the transition is logged once, not per failed retry\n"
      << log;
}

TEST_F(LoopbackGuardDaemonTest, ASpawnReadsThePortSysctlsAgainBeforeItRuns) {
  SysctlOverride range_file("/proc/sys/net/ipv4/ip_local_port_range");
  ASSERT_TRUE(range_file.ok());
  auto range = sandbox::EphemeralPortRange();
  ASSERT_TRUE(range) << range.error().ToString();
  const uint32_t narrowed_low = range->low + 1000u;
  std::optional<sandbox::BindGuardRules> stale, after;
  std::string spawn_error;
  ASSERT_TRUE(RunOnce("", [&] {
    const int map = NewestMap("mp_bind_rules");
    if (map < 0) return;
    EXPECT_TRUE(range_file.Set(std::to_string(narrowed_low) + " " + std::to_string(range->high)));
    // Control: no signal, no spawn yet; the map keeps the old range.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    stale = ReadRules(map);
    auto c = ControlClient::Connect(kBase + "/run/control.sock");
    if (!c) {
      spawn_error = c.error().ToString();
    } else {
      wire::SpawnRequest req;
      req.task = "true";
      req.client = "test";
      // Its outcome does not matter: the rules are read before the manager sees it.
      if (auto r = c->Call(req); !r) spawn_error = r.error().ToString();
    }
    after = ReadRules(map);
    ::close(map);
  }));
  const std::string log = ReadAll(kBase + "/daemon.log");
  ASSERT_TRUE(stale) << "no BPF map named mp_bind_rules while the daemon runs\n" << log;
  ASSERT_EQ(spawn_error, "") << log;
  EXPECT_EQ(stale->low, range->low) << "the map changed before the spawn";
  ASSERT_TRUE(after);
  EXPECT_EQ(after->low, narrowed_low) << log;
  EXPECT_NE(log.find("bind guard: the port sysctls changed (before a spawn)"), std::string::npos)
      << log;
}

}  // namespace
}  // namespace mp::testing
