// The loopback guard (sandbox/loopback_guard.h, session_host_loopback = deny) in the kernel: a
// session in the host's network namespace cannot connect to a listener of the host on
// 127.0.0.1, ::1 or ::ffff:127.0.0.1, nor send UDP there, and still reaches a non-loopback
// address of the host; the control (the guard detached) connects everywhere; a session with
// its own namespace keeps its own loopback under the guard; attaching again (a restart)
// replaces the earlier copy instead of stacking it. Runs in the test VM only.
#include "sandbox/loopback_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "sandbox_runner.h"

namespace mp::testing {
namespace {

// A host address that is not loopback (TEST-NET-1, put on lo by the suite).
constexpr char kOtherAddress[] = "192.0.2.7";

// Tries each destination; prints "name=ok" or "name=<errno name>" per line.
constexpr char kProbe[] = R"PY(
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
probe("v4", socket.AF_INET, ("127.0.0.1", port))
probe("v4b", socket.AF_INET, ("127.1.2.3", port))
probe("v6", socket.AF_INET6, ("::1", port))
probe("mapped", socket.AF_INET6, ("::ffff:127.0.0.1", port))
probe("udp4", socket.AF_INET, ("127.0.0.1", port), socket.SOCK_DGRAM)
probe("udp6", socket.AF_INET6, ("::1", port), socket.SOCK_DGRAM)
probe("other", socket.AF_INET, (sys.argv[2], port))
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
  }

  std::string RunProbe(sandbox::NetworkMode network) {
    auto req = runner_->BaseRequest(
        {"/usr/bin/python3", "-c", kProbe, std::to_string(port_), kOtherAddress});
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

TEST_F(LoopbackGuardTest, AHostNetworkSessionCannotReachTheHostsLoopback) {
  auto attached = sandbox::AttachLoopbackGuard(runner_->root().dirfd());
  ASSERT_TRUE(attached) << attached.error().ToString();
  const std::string out = RunProbe(sandbox::NetworkMode::kHost);
  EXPECT_NE(out.find("v4=EPERM\n"), std::string::npos) << out;
  EXPECT_NE(out.find("v4b=EPERM\n"), std::string::npos) << out;
  EXPECT_NE(out.find("v6=EPERM\n"), std::string::npos) << out;
  EXPECT_NE(out.find("mapped=EPERM\n"), std::string::npos) << out;
  EXPECT_NE(out.find("udp4=EPERM\n"), std::string::npos) << out;
  EXPECT_NE(out.find("udp6=EPERM\n"), std::string::npos) << out;
  EXPECT_NE(out.find("other=ok\n"), std::string::npos) << "a non-loopback address: " << out;
}

TEST_F(LoopbackGuardTest, ControlWithoutTheGuardTheSameProbeReachesEverything) {
  const std::string out = RunProbe(sandbox::NetworkMode::kHost);
  for (const char* name : {"v4", "v4b", "v6", "mapped", "udp4", "udp6", "other"}) {
    EXPECT_NE(out.find(std::string(name) + "=ok\n"), std::string::npos) << name << ": " << out;
  }
}

TEST_F(LoopbackGuardTest, ASessionWithItsOwnNamespaceKeepsItsOwnLoopback) {
  auto attached = sandbox::AttachLoopbackGuard(runner_->root().dirfd());
  ASSERT_TRUE(attached) << attached.error().ToString();
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
    auto attached = sandbox::AttachLoopbackGuard(runner_->root().dirfd());
    ASSERT_TRUE(attached) << attached.error().ToString();
  }
  auto detached = sandbox::DetachLoopbackGuard(runner_->root().dirfd());
  ASSERT_TRUE(detached) << detached.error().ToString();
  EXPECT_EQ(*detached, 4) << "one program per hook (inet4/6 connect, udp4/6 sendmsg)";
  const std::string out = RunProbe(sandbox::NetworkMode::kHost);
  EXPECT_NE(out.find("v4=ok\n"), std::string::npos) << "nothing left attached: " << out;
}

}  // namespace
}  // namespace mp::testing
