// The loopback guard (sandbox/loopback_guard.h, session_host_loopback = deny) in the kernel: a
// session in the host's network namespace cannot connect to a listener of the host on
// 127.0.0.1, ::1 or ::ffff:127.0.0.1, nor send UDP there, nor reach it on another address the
// host answers for (one it had at attach and one it gains later), while an address that is not the
// host's is not refused; the control (the guard detached) connects everywhere; a session with
// its own namespace keeps its own loopback under the guard; attaching again (a restart)
// replaces the earlier copy instead of stacking it; a local route (AnyIP) and multicast groups
// count as the host's, the range once its route notice is followed. The bind guard
// (session_host_bind = ephemeral): a host-network session cannot bind a service port the host left
// free (as the API does while it restarts), on any address or protocol, yet binds port 0 and the
// ephemeral range; the control (no bind guard) takes the port; a session with its own namespace
// binds it under the guard; a range narrowed at runtime holds once the guard's map is updated
// (the control: not before), and a port of ip_local_reserved_ports is refused (the control:
// bindable without the guard). A refresh that failed leaves the loopback guard's map closed
// (a destination that is not the host's refused too) until one succeeds. Runs in the test VM
// only.
#include "sandbox/loopback_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sandbox_runner.h"

namespace mp::testing {
namespace {

// A host address that is not loopback (TEST-NET-1, put on lo by the suite).
constexpr char kOtherAddress[] = "192.0.2.7";
// One the host gains after the guard is attached (put on lo by a test, removed after).
constexpr char kLaterAddress[] = "192.0.2.8";
// An address that is not the host's (nothing routes it in the VM: ENETUNREACH, not EPERM).
constexpr char kNeighbour[] = "198.51.100.9";

// probe(name, family, addr, kind): connects (TCP) or sends (UDP) to addr; prints "name=ok" or
// "name=<errno name>". argv[1] is the port.
constexpr char kProbeDef[] = R"PY(
import errno, socket, sys
port = int(sys.argv[1])
def probe(name, family, addr, kind=socket.SOCK_STREAM):
    s = socket.socket(family, kind)
    s.settimeout(5)
    try:
        if kind == socket.SOCK_STREAM:
            s.connect(addr)
        else:
            s.sendto(b"x", addr)
        verdict = "ok"
    except OSError as e:
        verdict = errno.errorcode.get(e.errno, str(e.errno))
    print(name + "=" + verdict, flush=True)
)PY";

// Tries each destination.
const std::string kProbe = std::string(kProbeDef) + R"PY(
probe("v4", socket.AF_INET, ("127.0.0.1", port))
probe("v4b", socket.AF_INET, ("127.1.2.3", port))
probe("v6", socket.AF_INET6, ("::1", port))
probe("mapped", socket.AF_INET6, ("::ffff:127.0.0.1", port))
probe("udp4", socket.AF_INET, ("127.0.0.1", port), socket.SOCK_DGRAM)
probe("udp6", socket.AF_INET6, ("::1", port), socket.SOCK_DGRAM)
probe("other", socket.AF_INET, (sys.argv[2], port))
probe("mapped_other", socket.AF_INET6, ("::ffff:" + sys.argv[2], port))
probe("neighbour", socket.AF_INET, (sys.argv[3], port))
)PY";

// A server and a client on 127.0.0.1 inside one session.
constexpr char kOwnLoopback[] = R"PY(
import socket
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
c = socket.create_connection(srv.getsockname(), timeout=5)
conn, _ = srv.accept()
c.sendall(b"ping")
print("own=" + conn.recv(4).decode(), flush=True)
)PY";

// What the host answers for without owning it on an interface: a local route (AnyIP) and
// multicast groups.
const std::string kRangeProbe = std::string(kProbeDef) + R"PY(
probe("anyip", socket.AF_INET, ("198.18.0.77", port))
probe("anyip_mapped", socket.AF_INET6, ("::ffff:198.18.0.77", port))
probe("mcast4", socket.AF_INET, ("224.0.0.1", port), socket.SOCK_DGRAM)
probe("mcast6", socket.AF_INET6, ("ff02::1", port), socket.SOCK_DGRAM)
)PY";

// Binds each way; prints "name=ok" or "name=<errno name>" per line. argv: a service port the
// host left free, a port of the ephemeral range.
constexpr char kBindProbe[] = R"PY(
import errno, socket, sys
service, ephemeral = int(sys.argv[1]), int(sys.argv[2])
def probe(name, family, addr, kind=socket.SOCK_STREAM):
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(addr)
        if kind == socket.SOCK_STREAM:
            s.listen(1)
        verdict = "ok"
    except OSError as e:
        verdict = errno.errorcode.get(e.errno, str(e.errno))
    s.close()
    print(name + "=" + verdict, flush=True)
probe("squat4", socket.AF_INET, ("127.0.0.1", service))
probe("squat_any4", socket.AF_INET, ("0.0.0.0", service))
probe("squat6", socket.AF_INET6, ("::1", service))
probe("squat_any6", socket.AF_INET6, ("::", service))
probe("squat_udp", socket.AF_INET, ("0.0.0.0", service), socket.SOCK_DGRAM)
probe("zero", socket.AF_INET, ("127.0.0.1", 0))
probe("zero6", socket.AF_INET6, ("::", 0))
probe("ephemeral", socket.AF_INET, ("0.0.0.0", ephemeral))
s = socket.socket()
s.listen(1)
print("autobind=" + ("ok" if s.getsockname()[1] != 0 else "none"), flush=True)
)PY";

// Binds each port of argv on 127.0.0.1 and on ::, TCP; prints "PORT=<verdict>" and
// "PORT6=<verdict>" per port ("ok" or the errno's name).
constexpr char kPortsProbe[] = R"PY(
import errno, socket, sys
for port in map(int, sys.argv[1:]):
    for family, addr, suffix in ((socket.AF_INET, "127.0.0.1", ""), (socket.AF_INET6, "::", "6")):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((addr, port))
            verdict = "ok"
        except OSError as e:
            verdict = errno.errorcode.get(e.errno, str(e.errno))
        s.close()
        print(str(port) + suffix + "=" + verdict, flush=True)
)PY";

// Sets a sysctl file for one test and puts its old text back after.
class SysctlOverride {
 public:
  SysctlOverride(const char* path, const std::string& text) : path_(path) {
    std::ifstream in(path);
    std::getline(in, old_);
    ok_ = static_cast<bool>(in) && Write(text);
  }
  ~SysctlOverride() {
    if (ok_ && !Write(old_))
      std::fprintf(stderr, "could not restore %s to %s\n", path_, old_.c_str());
  }
  bool ok() const { return ok_; }

 private:
  bool Write(const std::string& text) {
    std::ofstream out(path_);
    out << text << "\n";
    out.flush();
    return static_cast<bool>(out);
  }
  const char* path_;
  std::string old_;
  bool ok_ = false;
};

class LoopbackGuardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    runner_ = new SandboxRunner("mp-loopback");
    // lo answers 127.0.0.0/8 only until it has another address.
    other_added_ =
        std::system((std::string("ip addr add ") + kOtherAddress + "/32 dev lo").c_str()) == 0;
  }
  static void TearDownTestSuite() {
    (void)sandbox::DetachLoopbackGuard(runner_->root().dirfd());
    if (other_added_) {
      const std::string del = std::string("ip addr del ") + kOtherAddress + "/32 dev lo";
      if (std::system(del.c_str()) != 0) std::fprintf(stderr, "could not run: %s\n", del.c_str());
    }
    delete runner_;
    runner_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(other_added_) << "could not add " << kOtherAddress << " to lo with ip(8)";
    // A dual-stack listener of the host on every address: the destination decides.
    listener_ = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener_, 0);
    int zero = 0;
    ASSERT_EQ(::setsockopt(listener_, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero), 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(listener_, 64), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ(::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin6_port);
  }
  void TearDown() override {
    if (listener_ >= 0) ::close(listener_);
    (void)sandbox::DetachLoopbackGuard(runner_->root().dirfd());
    (void)sandbox::DetachBindGuard(runner_->root().dirfd());
  }

  // A port like the API's that a service of the host held and let go (a restart): free now.
  static int FreedServicePort() {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(3200);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int one = 1;
    (void)::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const bool held =
        ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(s, 8) == 0;
    ::close(s);
    EXPECT_TRUE(held) << "the host could not listen on 127.0.0.1:3200 itself";
    return 3200;
  }

  // The bind guard with the host's rules now (both port sysctls).
  static Result<std::unique_ptr<sandbox::BindGuard>> AttachHostBindGuard() {
    MP_TRY(const sandbox::BindGuardRules rules, sandbox::HostBindGuardRules());
    return sandbox::BindGuard::Attach(runner_->root().dirfd(), rules);
  }

  std::string RunPortsProbe(const std::vector<int>& ports) {
    std::vector<std::string> argv = {"/usr/bin/python3", "-c", kPortsProbe};
    for (const int p : ports) argv.push_back(std::to_string(p));
    auto req = runner_->BaseRequest(argv);
    req.network = sandbox::NetworkMode::kHost;
    auto r = runner_->Run(req);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? r->out : "";
  }

  std::string RunRangeProbe() {
    auto req = runner_->BaseRequest({"/usr/bin/python3", "-c", kRangeProbe, std::to_string(port_)});
    req.network = sandbox::NetworkMode::kHost;
    auto r = runner_->Run(req);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? r->out : "";
  }

  std::string RunBindProbe(sandbox::NetworkMode network) {
    auto range = sandbox::EphemeralPortRange();
    EXPECT_TRUE(range) << range.error().ToString();
    const int ephemeral = range ? range->low + 123 : 0;
    auto req =
        runner_->BaseRequest({"/usr/bin/python3", "-c", kBindProbe,
                              std::to_string(FreedServicePort()), std::to_string(ephemeral)});
    req.network = network;
    auto r = runner_->Run(req);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? r->out : "";
  }

  std::string RunProbe(sandbox::NetworkMode network, const char* other = kOtherAddress) {
    auto req = runner_->BaseRequest(
        {"/usr/bin/python3", "-c", kProbe, std::to_string(port_), other, kNeighbour});
    req.network = network;
    auto r = runner_->Run(req);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? r->out : "";
  }

  static SandboxRunner* runner_;
  static bool other_added_;
  int listener_ = -1;
  int port_ = 0;
};
SandboxRunner* LoopbackGuardTest::runner_ = nullptr;
bool LoopbackGuardTest::other_added_ = false;

TEST_F(LoopbackGuardTest, AHostNetworkSessionCannotReachTheHostsLoopbackNorItsOwnAddresses) {
  auto guard = sandbox::LoopbackGuard::Attach(runner_->root().dirfd());
  ASSERT_TRUE(guard) << guard.error().ToString();
  const std::string out = RunProbe(sandbox::NetworkMode::kHost);
  for (const char* name : {"v4", "v4b", "v6", "mapped", "udp4", "udp6", "other", "mapped_other"}) {
    EXPECT_NE(out.find(std::string(name) + "=EPERM\n"), std::string::npos) << name << ": " << out;
  }
  // Not the host's: the guard lets it through and the network answers (nothing routes it).
  EXPECT_NE(out.find("neighbour=ENETUNREACH\n"), std::string::npos) << out;
}

TEST_F(LoopbackGuardTest, ControlWithoutTheGuardTheSameProbeReachesEverything) {
  const std::string out = RunProbe(sandbox::NetworkMode::kHost);
  for (const char* name : {"v4", "v4b", "v6", "mapped", "udp4", "udp6", "other", "mapped_other"}) {
    EXPECT_NE(out.find(std::string(name) + "=ok\n"), std::string::npos) << name << ": " << out;
  }
  EXPECT_NE(out.find("neighbour=ENETUNREACH\n"), std::string::npos) << out;
}

TEST_F(LoopbackGuardTest, AnAddressTheHostGainsLaterIsRefusedOnceTheMapFollows) {
  auto guard = sandbox::LoopbackGuard::Attach(runner_->root().dirfd());
  ASSERT_TRUE(guard) << guard.error().ToString();
  const std::string add = std::string("ip addr add ") + kLaterAddress + "/32 dev lo";
  const std::string del = std::string("ip addr del ") + kLaterAddress + "/32 dev lo";
  ASSERT_EQ(std::system(add.c_str()), 0) << add;
  // The rtnetlink notice is what the supervisor's loop waits for.
  pollfd p{(*guard)->change_fd(), POLLIN, 0};
  const int ready = ::poll(&p, 1, 5000);
  // Control: before the map follows, the new address is reachable (a map filled once at
  // attach would leave it open for good).
  const std::string before = RunProbe(sandbox::NetworkMode::kHost, kLaterAddress);
  auto refreshed = (*guard)->Refresh();
  const std::string after = RunProbe(sandbox::NetworkMode::kHost, kLaterAddress);
  EXPECT_EQ(std::system(del.c_str()), 0) << del;
  ASSERT_EQ(ready, 1) << "no rtnetlink notice within 5 s of " << add;
  ASSERT_TRUE(refreshed) << refreshed.error().ToString();
  EXPECT_NE(before.find("other=ok\n"), std::string::npos) << before;
  EXPECT_NE(after.find("other=EPERM\n"), std::string::npos) << after;
  EXPECT_NE(after.find("mapped_other=EPERM\n"), std::string::npos) << after;
  // Gone again: the map forgets it (the address is nobody's now: unreachable, not refused).
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no rtnetlink notice within 5 s of " << del;
  ASSERT_TRUE((*guard)->Refresh());
  const std::string gone = RunProbe(sandbox::NetworkMode::kHost, kLaterAddress);
  EXPECT_EQ(gone.find("other=EPERM\n"), std::string::npos) << gone;
}

TEST_F(LoopbackGuardTest, ASessionWithItsOwnNamespaceKeepsItsOwnLoopback) {
  auto guard = sandbox::LoopbackGuard::Attach(runner_->root().dirfd());
  ASSERT_TRUE(guard) << guard.error().ToString();
  auto req = runner_->BaseRequest({"/usr/bin/python3", "-c", kOwnLoopback});
  req.network = sandbox::NetworkMode::kNone;
  auto r = runner_->Run(req);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_NE(r->out.find("own=ping\n"), std::string::npos) << r->out;
  // ...and from there the host's listener is out of reach anyway (another namespace).
  const std::string out = RunProbe(sandbox::NetworkMode::kNone);
  EXPECT_EQ(out.find("v4=ok\n"), std::string::npos) << out;
}

TEST_F(LoopbackGuardTest, AttachingAgainReplacesTheEarlierCopy) {
  for (int i = 0; i < 3; ++i) {
    auto guard = sandbox::LoopbackGuard::Attach(runner_->root().dirfd());
    ASSERT_TRUE(guard) << guard.error().ToString();
  }
  auto detached = sandbox::DetachLoopbackGuard(runner_->root().dirfd());
  ASSERT_TRUE(detached) << detached.error().ToString();
  EXPECT_EQ(*detached, 4) << "one program per hook (inet4/6 connect, udp4/6 sendmsg)";
  const std::string out = RunProbe(sandbox::NetworkMode::kHost);
  EXPECT_NE(out.find("v4=ok\n"), std::string::npos) << "nothing left attached: " << out;
}

// An AnyIP range: the host answers for all of it, with no address on an interface.
constexpr char kAddAnyIp[] = "ip route add local 198.18.0.0/24 dev lo";
constexpr char kDelAnyIp[] = "ip route del local 198.18.0.0/24 dev lo";

TEST_F(LoopbackGuardTest, LocalRoutesAndMulticastAreTheHostsToo) {
  auto guard = sandbox::LoopbackGuard::Attach(runner_->root().dirfd());
  ASSERT_TRUE(guard) << guard.error().ToString();
  ASSERT_EQ(std::system(kAddAnyIp), 0) << kAddAnyIp;
  // The route notice is what the supervisor's loop waits for.
  pollfd p{(*guard)->change_fd(), POLLIN, 0};
  const int ready = ::poll(&p, 1, 5000);
  // Control: until the map follows, the range reaches the host's listener.
  const std::string before = RunRangeProbe();
  auto refreshed = (*guard)->Refresh();
  const std::string after = RunRangeProbe();
  EXPECT_EQ(std::system(kDelAnyIp), 0) << kDelAnyIp;
  ASSERT_EQ(ready, 1) << "no rtnetlink notice within 5 s of " << kAddAnyIp;
  ASSERT_TRUE(refreshed) << refreshed.error().ToString();
  EXPECT_NE(before.find("anyip=ok\n"), std::string::npos) << before;
  for (const char* name : {"anyip", "anyip_mapped", "mcast4", "mcast6"}) {
    EXPECT_NE(after.find(std::string(name) + "=EPERM\n"), std::string::npos)
        << name << ": " << after;
  }
}

TEST_F(LoopbackGuardTest, ControlWithoutTheGuardLocalRoutesAndMulticastAreReached) {
  ASSERT_EQ(std::system(kAddAnyIp), 0) << kAddAnyIp;
  const std::string out = RunRangeProbe();
  EXPECT_EQ(std::system(kDelAnyIp), 0) << kDelAnyIp;
  EXPECT_NE(out.find("anyip=ok\n"), std::string::npos) << out;
  EXPECT_NE(out.find("anyip_mapped=ok\n"), std::string::npos) << out;
  // Nothing refuses the groups (lo may not route them: any answer but EPERM).
  EXPECT_NE(out.find("mcast4="), std::string::npos) << out;
  EXPECT_EQ(out.find("mcast4=EPERM"), std::string::npos) << out;
  EXPECT_NE(out.find("mcast6="), std::string::npos) << out;
  EXPECT_EQ(out.find("mcast6=EPERM"), std::string::npos) << out;
}

constexpr const char* kSquats[] = {"squat4", "squat_any4", "squat6", "squat_any6", "squat_udp"};

TEST_F(LoopbackGuardTest, AHostNetworkSessionCannotTakeAServicePortTheHostLetGo) {
  auto guard = AttachHostBindGuard();
  ASSERT_TRUE(guard) << guard.error().ToString();
  const std::string out = RunBindProbe(sandbox::NetworkMode::kHost);
  for (const char* name : kSquats) {
    EXPECT_NE(out.find(std::string(name) + "=EPERM\n"), std::string::npos) << name << ": " << out;
  }
  for (const char* name : {"zero", "zero6", "ephemeral", "autobind"}) {
    EXPECT_NE(out.find(std::string(name) + "=ok\n"), std::string::npos) << name << ": " << out;
  }
}

TEST_F(LoopbackGuardTest, ControlWithoutTheBindGuardTheSessionTakesThePort) {
  const std::string out = RunBindProbe(sandbox::NetworkMode::kHost);
  for (const char* name : kSquats) {
    EXPECT_NE(out.find(std::string(name) + "=ok\n"), std::string::npos) << name << ": " << out;
  }
}

TEST_F(LoopbackGuardTest, UnderTheBindGuardASessionWithItsOwnNamespaceBindsAnyPort) {
  auto guard = AttachHostBindGuard();
  ASSERT_TRUE(guard) << guard.error().ToString();
  const std::string out = RunBindProbe(sandbox::NetworkMode::kNone);
  for (const char* name : kSquats) {
    EXPECT_NE(out.find(std::string(name) + "=ok\n"), std::string::npos) << name << ": " << out;
  }
}

TEST_F(LoopbackGuardTest, AttachingTheBindGuardAgainReplacesTheEarlierCopy) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(AttachHostBindGuard());
  auto detached = sandbox::DetachBindGuard(runner_->root().dirfd());
  ASSERT_TRUE(detached) << detached.error().ToString();
  EXPECT_EQ(*detached, 2) << "one program per hook (inet4/6 bind)";
}

constexpr char kRangePath[] = "/proc/sys/net/ipv4/ip_local_port_range";
constexpr char kReservedPath[] = "/proc/sys/net/ipv4/ip_local_reserved_ports";

TEST_F(LoopbackGuardTest, ARangeNarrowedAtRuntimeHoldsOnceTheGuardReadsItAgain) {
  auto range = sandbox::EphemeralPortRange();
  ASSERT_TRUE(range) << range.error().ToString();
  ASSERT_GT(range->high - range->low, 3000) << "the VM's range is too narrow to narrow";
  const int dropped = range->low + 200;  // in the range at attach, out of it after
  const int kept = range->low + 2200;
  auto guard = AttachHostBindGuard();
  ASSERT_TRUE(guard) << guard.error().ToString();
  const std::string at_attach = RunPortsProbe({dropped});
  SysctlOverride narrowed(kRangePath,
                          std::to_string(range->low + 1000) + " " + std::to_string(range->high));
  ASSERT_TRUE(narrowed.ok()) << "could not narrow " << kRangePath;
  // Control: the sysctl changed but the guard's map did not (no re-read): still bindable.
  const std::string stale = RunPortsProbe({dropped});
  auto rules = sandbox::HostBindGuardRules();
  ASSERT_TRUE(rules) << rules.error().ToString();
  auto changed = (*guard)->Update(*rules);
  ASSERT_TRUE(changed) << changed.error().ToString();
  EXPECT_TRUE(*changed);
  auto again = (*guard)->Update(*rules);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again) << "the same rules are not written twice";
  const std::string after = RunPortsProbe({dropped, kept});
  const std::string d = std::to_string(dropped), k = std::to_string(kept);
  EXPECT_NE(at_attach.find(d + "=ok\n"), std::string::npos) << at_attach;
  EXPECT_NE(stale.find(d + "=ok\n"), std::string::npos) << stale;
  EXPECT_NE(after.find(d + "=EPERM\n"), std::string::npos) << after;
  EXPECT_NE(after.find(d + "6=EPERM\n"), std::string::npos) << after;
  EXPECT_NE(after.find(k + "=ok\n"), std::string::npos) << after;
  EXPECT_NE(after.find(k + "6=ok\n"), std::string::npos) << after;
}

TEST_F(LoopbackGuardTest, AReservedPortInsideTheRangeIsRefused) {
  auto range = sandbox::EphemeralPortRange();
  ASSERT_TRUE(range) << range.error().ToString();
  const int reserved = range->low + 300, neighbour = reserved + 1;
  SysctlOverride set(kReservedPath, std::to_string(reserved));
  ASSERT_TRUE(set.ok()) << "could not write " << kReservedPath;
  auto guard = AttachHostBindGuard();
  ASSERT_TRUE(guard) << guard.error().ToString();
  const std::string out = RunPortsProbe({reserved, neighbour});
  const std::string r = std::to_string(reserved), n = std::to_string(neighbour);
  EXPECT_NE(out.find(r + "=EPERM\n"), std::string::npos) << out;
  EXPECT_NE(out.find(r + "6=EPERM\n"), std::string::npos) << out;
  EXPECT_NE(out.find(n + "=ok\n"), std::string::npos) << out;
  EXPECT_NE(out.find(n + "6=ok\n"), std::string::npos) << out;
}

TEST_F(LoopbackGuardTest, ControlWithoutTheBindGuardAReservedPortIsBindable) {
  auto range = sandbox::EphemeralPortRange();
  ASSERT_TRUE(range) << range.error().ToString();
  const int reserved = range->low + 300;
  SysctlOverride set(kReservedPath, std::to_string(reserved));
  ASSERT_TRUE(set.ok()) << "could not write " << kReservedPath;
  const std::string out = RunPortsProbe({reserved});
  EXPECT_NE(out.find(std::to_string(reserved) + "=ok\n"), std::string::npos) << out;
  EXPECT_NE(out.find(std::to_string(reserved) + "6=ok\n"), std::string::npos) << out;
}

TEST_F(LoopbackGuardTest, AFailedRefreshFailsClosedUntilARefreshSucceeds) {
  auto guard = sandbox::LoopbackGuard::Attach(runner_->root().dirfd());
  ASSERT_TRUE(guard) << guard.error().ToString();
  // Control: a map that is current lets a destination that is not the host's through.
  const std::string before = RunProbe(sandbox::NetworkMode::kHost);
  ASSERT_TRUE((*guard)->FailClosed());
  EXPECT_TRUE((*guard)->failed_closed());
  const std::string closed = RunProbe(sandbox::NetworkMode::kHost);
  auto refreshed = (*guard)->Refresh();
  ASSERT_TRUE(refreshed) << refreshed.error().ToString();
  EXPECT_FALSE((*guard)->failed_closed());
  const std::string after = RunProbe(sandbox::NetworkMode::kHost);
  EXPECT_NE(before.find("neighbour=ENETUNREACH\n"), std::string::npos) << before;
  EXPECT_NE(closed.find("neighbour=EPERM\n"), std::string::npos) << closed;
  EXPECT_NE(closed.find("v4=EPERM\n"), std::string::npos) << closed;
  EXPECT_NE(after.find("neighbour=ENETUNREACH\n"), std::string::npos) << after;
  EXPECT_NE(after.find("other=EPERM\n"), std::string::npos) << after;
}

}  // namespace
}  // namespace mp::testing
