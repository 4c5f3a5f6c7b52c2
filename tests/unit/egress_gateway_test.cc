// The egress gateway's engine (src/egress/egress_session.h, issue 14) over loopback: the HTTP
// proxy (CONNECT and absolute-form) and the stub DNS. Each refusal comes with a control where
// the same probe, allowed, gets through.
#include <gtest/gtest.h>

#include <string>

#include "egress_fixture.h"

namespace mp::egress::testing {
namespace {

using GatewayProxyTest = GatewayFixture;

std::string Connect(const std::string& authority) {
  return "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n";
}

TEST_F(GatewayProxyTest, ConnectToAllowedNameRelaysBothWays) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["echo.test"] = {"127.0.0.1"};
  std::string authority = "echo.test:" + std::to_string(echo.port());
  StartSession({authority}, {echo.port()});
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), Connect(authority));
  EXPECT_EQ(ReadHead(client.get()), "HTTP/1.1 200 Connection established\r\n\r\n");
  SendAll(client.get(), "ping through the tunnel");
  EXPECT_EQ(ReadAll(client.get(), 23).bytes, "ping through the tunnel");
  shutdown(client.get(), SHUT_WR);  // half-close travels to the upstream, which then closes
  EXPECT_EQ(ReadAll(client.get()).end, End::kEof);
  ASSERT_TRUE(WaitFor([&] { return !verdicts().empty(); }));
  Verdict v = verdicts().back();
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.name, "echo.test");
  EXPECT_EQ(v.session_id, "s-test");
  EXPECT_EQ(v.bytes_up, 23u);
  EXPECT_EQ(v.bytes_down, 23u);
  EXPECT_EQ(session_->counters().allowed.load(), 1u);
  EXPECT_EQ(session_->counters().bytes_up.load(), 23u);
}

TEST_F(GatewayProxyTest, ConnectToNameNotAllowedIs403AtOnce) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["echo.test"] = {"127.0.0.1"};
  resolver_->names["other.test"] = {"127.0.0.1"};
  std::string allowed = "echo.test:" + std::to_string(echo.port());
  std::string other = "other.test:" + std::to_string(echo.port());
  StartSession({allowed}, {echo.port()});
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), Connect(other));
  Received r = ReadAll(client.get());
  EXPECT_EQ(r.end, End::kEof);
  EXPECT_TRUE(r.bytes.starts_with("HTTP/1.1 403 Forbidden\r\n")) << r.bytes;
  EXPECT_NE(r.bytes.find(other + " is not in this session's allowlist"), std::string::npos);
  EXPECT_EQ(echo.connections(), 0);
  ASSERT_EQ(verdicts().size(), 1u);
  EXPECT_FALSE(verdicts()[0].allowed);
  EXPECT_EQ(verdicts()[0].name, "other.test");
  EXPECT_EQ(session_->counters().denied.load(), 1u);
  // Control: the same probe with the name allowed gets its tunnel.
  StartSession({allowed, other}, {echo.port()});
  UniqueFd again = Dial(proxy_port_);
  SendAll(again.get(), Connect(other));
  EXPECT_EQ(ReadHead(again.get()), "HTTP/1.1 200 Connection established\r\n\r\n");
}

TEST_F(GatewayProxyTest, AbsoluteFormIsForwardedOnceInOriginFormWithConnectionClose) {
  Upstream web(Upstream::Mode::kHttp);
  resolver_->names["web.test"] = {"127.0.0.1"};
  std::string authority = "web.test:" + std::to_string(web.port());
  StartSession({authority}, {web.port()});
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), "POST http://" + authority + "/first?q=1 HTTP/1.1\r\nHost: " + authority +
                            "\r\nProxy-Connection: keep-alive\r\nContent-Length: 4\r\n\r\nbody"
                            "GET http://" +
                            authority + "/second HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  Received r = ReadAll(client.get());
  EXPECT_NE(r.bytes.find("\r\n\r\nok"), std::string::npos) << r.bytes;
  ASSERT_TRUE(WaitFor([&] { return web.received().find("body") != std::string::npos; }));
  std::string seen = web.received();
  EXPECT_TRUE(seen.starts_with("POST /first?q=1 HTTP/1.1\r\n")) << seen;
  EXPECT_NE(seen.find("Connection: close\r\n"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("Proxy-Connection"), std::string::npos) << seen;
  // The pipelined second request never reaches the upstream; the first one's body does.
  EXPECT_TRUE(seen.ends_with("\r\n\r\nbody")) << seen;
  EXPECT_EQ(seen.find("/second"), std::string::npos) << seen;
}

TEST_F(GatewayProxyTest, HostHeaderDisagreeingWithTheUrlIsRefused) {
  Upstream web(Upstream::Mode::kHttp);
  resolver_->names["web.test"] = {"127.0.0.1"};
  std::string authority = "web.test:" + std::to_string(web.port());
  StartSession({authority}, {web.port()});
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), "GET http://" + authority + "/ HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n");
  Received r = ReadAll(client.get());
  EXPECT_TRUE(r.bytes.starts_with("HTTP/1.1 400 Bad Request\r\n")) << r.bytes;
  EXPECT_EQ(web.connections(), 0);
  // Control: the agreeing Host header is forwarded.
  UniqueFd agreeing = Dial(proxy_port_);
  SendAll(agreeing.get(),
          "GET http://" + authority + "/ HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  EXPECT_NE(ReadAll(agreeing.get()).bytes.find("200 OK"), std::string::npos);
}

TEST_F(GatewayProxyTest, NamesResolvingToNonPublicAddressesAreRefused) {
  Upstream echo(Upstream::Mode::kEcho);
  std::string port = std::to_string(echo.port());
  resolver_->names["loop.test"] = {"127.0.0.1"};
  resolver_->names["lan.test"] = {"10.1.2.3"};
  resolver_->names["meta.test"] = {"169.254.169.254"};
  StartSession({"loop.test:" + port, "lan.test:" + port, "meta.test:" + port});
  for (const char* name : {"loop.test", "lan.test", "meta.test"}) {
    UniqueFd client = Dial(proxy_port_);
    SendAll(client.get(), Connect(std::string(name) + ":" + port));
    Received r = ReadAll(client.get());
    EXPECT_TRUE(r.bytes.starts_with("HTTP/1.1 403 Forbidden\r\n")) << name << ": " << r.bytes;
    EXPECT_NE(r.bytes.find("need an address rule"), std::string::npos) << r.bytes;
  }
  EXPECT_EQ(echo.connections(), 0);
  // Control: with the explicit test allowance for that upstream, the loopback name connects.
  StartSession({"loop.test:" + port}, {echo.port()});
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), Connect("loop.test:" + port));
  EXPECT_EQ(ReadHead(client.get()), "HTTP/1.1 200 Connection established\r\n\r\n");
}

TEST_F(GatewayProxyTest, AddressRulesReachLoopbackButNeverTheProxyItself) {
  Upstream echo(Upstream::Mode::kEcho);
  StartSession({"127.0.0.1:" + std::to_string(echo.port())});
  // The address rule is the policy's own way to a loopback service (no test allowance).
  UniqueFd control = Dial(proxy_port_);
  SendAll(control.get(), Connect("127.0.0.1:" + std::to_string(echo.port())));
  EXPECT_EQ(ReadHead(control.get()), "HTTP/1.1 200 Connection established\r\n\r\n");
  // Even a rule naming the proxy's own address does not let a request loop through it.
  StartSession({}, {}, [&](GatewayConfig& c) {
    c.allow = *AllowList::Parse({"127.0.0.1:" + std::to_string(proxy_port_)});
  });
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), Connect("127.0.0.1:" + std::to_string(proxy_port_)));
  Received r = ReadAll(client.get());
  EXPECT_TRUE(r.bytes.starts_with("HTTP/1.1 403 Forbidden\r\n")) << r.bytes;
  EXPECT_NE(r.bytes.find("own listener"), std::string::npos) << r.bytes;
}

TEST_F(GatewayProxyTest, SlowRequestHeadIsClosedAtTheDeadline) {
  StartSession({"web.test:80"}, {},
               [](GatewayConfig& c) { c.limits.head_timeout = std::chrono::milliseconds(200); });
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), "GET http://web.test/ HTTP/1.1\r\nHost: web");
  Received r = ReadAll(client.get());
  EXPECT_NE(r.end, End::kTimeout);  // closed by the gateway well before the client's 5 s
  EXPECT_TRUE(r.bytes.empty());
  // Control: the complete head within the deadline gets an answer (here a refusal: the name
  // does not resolve), not a silent close.
  UniqueFd quick = Dial(proxy_port_);
  SendAll(quick.get(), "GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n");
  EXPECT_TRUE(ReadAll(quick.get()).bytes.starts_with("HTTP/1.1 403"));
}

// A DNS query for `name` with `type` (1 = A, 28 = AAAA) and its answer.
std::string AskDns(uint16_t port, const std::string& name, uint16_t type) {
  std::string q = {'\x12', '\x34', '\x01', '\x00', 0, 1, 0, 0, 0, 0, 0, 0};
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q += static_cast<char>(dot - start);
    q += name.substr(start, dot - start);
    start = dot + 1;
  }
  q += '\0';
  q += {static_cast<char>(type >> 8), static_cast<char>(type), 0, 1};
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval timeout{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  sendto(fd.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&address), sizeof address);
  char buf[512];
  ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

int Rcode(const std::string& answer) { return answer.size() > 3 ? answer[3] & 0x0f : -1; }
int AnswerCount(const std::string& answer) {
  return answer.size() > 7
             ? (static_cast<uint8_t>(answer[6]) << 8) | static_cast<uint8_t>(answer[7])
             : -1;
}

TEST_F(GatewayProxyTest, StubDnsAnswersAllowedNamesOnlyAndSynthetically) {
  StartSession({"api.example.com:443", "*.cdn.example:443"});
  std::string a = AskDns(dns_port_, "API.example.com", 1);
  ASSERT_EQ(Rcode(a), 0);
  ASSERT_EQ(AnswerCount(a), 1);
  std::string address = a.substr(a.size() - 4);
  EXPECT_EQ(static_cast<uint8_t>(address[0]), 198);
  EXPECT_EQ(static_cast<uint8_t>(address[1]) & 0xfe, 18);  // 198.18.0.0/15
  EXPECT_EQ(a.substr(0, 2), "\x12\x34");
  EXPECT_EQ(AskDns(dns_port_, "api.example.com", 1).substr(a.size() - 4), address);  // stable
  std::string wildcard = AskDns(dns_port_, "img.cdn.example", 1);
  EXPECT_EQ(Rcode(wildcard), 0);
  EXPECT_EQ(AnswerCount(wildcard), 1);
  std::string aaaa = AskDns(dns_port_, "api.example.com", 28);
  EXPECT_EQ(Rcode(aaaa), 0);  // NODATA
  EXPECT_EQ(AnswerCount(aaaa), 0);
  for (const char* name : {"evil.example", "cdn.example", "example.com"}) {
    std::string nx = AskDns(dns_port_, name, 1);
    EXPECT_EQ(Rcode(nx), 3) << name;  // NXDOMAIN
    EXPECT_EQ(AnswerCount(nx), 0) << name;
  }
  EXPECT_EQ(session_->counters().dns_nxdomain.load(), 3u);
  EXPECT_EQ(session_->counters().dns_answered.load(), 4u);
}

// Issue 14's checklist (IDN and trailing dots) for the stub DNS: a punycode name is answered
// in any case, with the same synthetic address, also when its rule was written with a
// trailing dot; the same name in UTF-8 (which a client's IDNA mapping would turn into the
// punycode one) is NXDOMAIN, not mapped: only the punycode form is a name here. The answered
// spellings are the control.
TEST_F(GatewayProxyTest, StubDnsAnswersPunycodeOnlyInAnyCase) {
  StartSession({"xn--bcher-kva.example:443", "plain.example.:443"});
  const std::string canonical = AskDns(dns_port_, "xn--bcher-kva.example", 1);
  ASSERT_EQ(Rcode(canonical), 0);
  ASSERT_EQ(AnswerCount(canonical), 1);
  std::string upper = AskDns(dns_port_, "XN--Bcher-KVA.example", 1);
  ASSERT_EQ(AnswerCount(upper), 1);
  EXPECT_EQ(upper.substr(upper.size() - 4), canonical.substr(canonical.size() - 4));
  for (const char* name : {"plain.example", "PLAIN.Example"}) {
    std::string a = AskDns(dns_port_, name, 1);
    EXPECT_EQ(Rcode(a), 0) << name;
    EXPECT_EQ(AnswerCount(a), 1) << name;
  }
  for (const char* name : {"b\xc3\xbc"
                           "cher.example",
                           "bcher-kva.example", "xn--bcher-kva.example.evil"}) {
    std::string nx = AskDns(dns_port_, name, 1);
    EXPECT_EQ(Rcode(nx), 3) << name;
    EXPECT_EQ(AnswerCount(nx), 0) << name;
  }
}

}  // namespace
}  // namespace mp::egress::testing
