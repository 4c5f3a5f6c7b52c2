// Issue 14's proxy checklist against the egress gateway's engine (src/egress/egress_session.h)
// over loopback, as a client inside a session would try it: CONNECT authorities on the wire,
// Host headers that disagree with the URL, pipelined requests, requests to the gateway itself,
// a second proxy through an allowed tunnel, SNI that disagrees with the DNS mapping, IDN and
// trailing-dot names. The pure parsers' tables are in egress_names_test.cc; the first cases of
// several items are in egress_gateway_test.cc and egress_transparent_test.cc. Each protection
// comes with a control: the same probe, allowed (or aimed at an ordinary upstream), gets
// through, so a refusal here is the protection and not a broken probe.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "egress_fixture.h"

namespace mp::egress::testing {
namespace {

using GatewayChecklistTest = GatewayFixture;

std::string ConnectRequest(const std::string& authority, const std::string& host) {
  return "CONNECT " + authority + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
}

// The answer to `request` sent alone on a new connection to `port`.
Received Ask(uint16_t port, const std::string& request) {
  UniqueFd client = Dial(port);
  SendAll(client.get(), request);
  return ReadAll(client.get());
}

// The status line's first 12 bytes ("HTTP/1.1 403"), or what came instead.
std::string Status(const Received& r) { return r.bytes.substr(0, 12); }

constexpr const char* kEstablished = "HTTP/1.1 200 Connection established\r\n\r\n";

// ---- CONNECT parsing

// Every malformed authority is refused with a 400 at once, before any name is resolved or any
// upstream connected: a missing, empty, zero, signed or overflowing port (one that a 16- or
// 32-bit wrap would turn into the allowed port), CR/LF, spaces or tabs inside the authority,
// an unbracketed or zoned IPv6 address, an IPv4 address in brackets, userinfo, a path, and
// names or labels over the DNS limits. Control: the well-formed authority gets its tunnel.
TEST_F(GatewayChecklistTest, MalformedConnectAuthoritiesAre400AndReachNothing) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["echo.test"] = {"127.0.0.1"};
  const uint16_t port = echo.port();
  const std::string p = std::to_string(port);
  const std::string allowed = "echo.test:" + p;
  StartSession({allowed}, {port});
  const std::vector<std::string> bad = {
      "echo.test",
      "echo.test:",
      "echo.test:0",
      "echo.test:+" + p,
      "echo.test:-" + p,
      "echo.test:0x" + p,
      "echo.test:" + std::to_string(port + 65536),
      "echo.test:" + std::to_string(port + 4294967296ULL),
      "echo.test:" + p + "x",
      "echo.test:" + p + "/path",
      "echo.test\r\n:" + p,
      "echo.test\r\nX-Smuggled: 1\r\n:" + p,
      "echo.test :" + p,
      "echo. test:" + p,
      "echo.test\t:" + p,
      "echo.test: " + p,
      "::1:" + p,
      "[::1]",
      "[::1%lo]:" + p,
      "[127.0.0.1]:" + p,
      "user@echo.test:" + p,
      "echo.test@127.0.0.1:" + p,
      std::string(250, 'a') + ".echo.test:" + p,  // over 253 characters
      std::string(64, 'a') + ".echo.test:" + p,   // a label over 63
  };
  for (const std::string& authority : bad) {
    Received r = Ask(proxy_port_, ConnectRequest(authority, allowed));
    EXPECT_NE(r.end, End::kTimeout) << authority;
    EXPECT_EQ(Status(r), "HTTP/1.1 400") << authority << ": " << r.bytes;
  }
  EXPECT_EQ(echo.connections(), 0);
  EXPECT_TRUE(resolver_->asked().empty());
  EXPECT_EQ(session_->counters().denied.load(), bad.size());
  EXPECT_EQ(session_->counters().allowed.load(), 0u);
  // Control: the same request with the well-formed authority.
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), ConnectRequest(allowed, allowed));
  EXPECT_EQ(ReadHead(client.get()), kEstablished);
}

// An absurdly long request line (far over the head limit) is cut off: a 400 or a close, never
// a wait and never a connection. Control: MalformedConnectAuthoritiesAre400AndReachNothing's.
TEST_F(GatewayChecklistTest, AnAbsurdlyLongConnectLineIsCutOff) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["echo.test"] = {"127.0.0.1"};
  const std::string allowed = "echo.test:" + std::to_string(echo.port());
  StartSession({allowed}, {echo.port()});
  for (size_t size : {size_t{20'000}, size_t{1'000'000}}) {
    const std::string authority = std::string(size, 'a') + ".echo.test:443";
    UniqueFd client = Dial(proxy_port_);
    SendAll(client.get(), ConnectRequest(authority, allowed));  // may fail half-way: closed
    Received r = ReadAll(client.get());
    EXPECT_NE(r.end, End::kTimeout) << size;
    EXPECT_TRUE(r.bytes.empty() || r.bytes.starts_with("HTTP/1.1 400")) << r.bytes;
  }
  EXPECT_EQ(echo.connections(), 0);
  EXPECT_TRUE(resolver_->asked().empty());
}

bool HasIpv6Loopback() {
  UniqueFd fd(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  return fd && bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
}

// IPv6 authorities: "[::1]:port" under an address rule is relayed, also when written in full
// ("[0:0:0:0:0:0:0:1]"); the same address at another port, another address, the IPv4-mapped
// form of an IPv4 address and the unbracketed or zoned forms are not.
TEST_F(GatewayChecklistTest, Ipv6AuthoritiesMatchOnlyTheirAddressRule) {
  if (!HasIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  Upstream echo6(Upstream::Mode::kEcho, Listen(SOCK_STREAM, "::1"));
  const std::string p = std::to_string(echo6.port());
  StartSession({"[::1]:" + p});
  for (const std::string& authority : {"[::1]:" + p, "[0:0:0:0:0:0:0:1]:" + p}) {
    UniqueFd client = Dial(proxy_port_);
    SendAll(client.get(), ConnectRequest(authority, authority));
    EXPECT_EQ(ReadHead(client.get()), kEstablished) << authority;
    SendAll(client.get(), "v6");
    EXPECT_EQ(ReadAll(client.get(), 2).bytes, "v6") << authority;
  }
  for (const std::string& authority : {"[::1]:" + std::to_string(echo6.port() == 1 ? 2 : 1),
                                       "[::2]:" + p, "[::ffff:127.0.0.1]:" + p}) {
    EXPECT_EQ(Status(Ask(proxy_port_, ConnectRequest(authority, authority))), "HTTP/1.1 403")
        << authority;
  }
  for (const std::string& authority : {"::1:" + p, "[::1%lo]:" + p, std::string("[::1]")}) {
    EXPECT_EQ(Status(Ask(proxy_port_, ConnectRequest(authority, authority))), "HTTP/1.1 400")
        << authority;
  }
  EXPECT_EQ(echo6.connections(), 2);
}

// ---- Host headers

// An absolute-form request is forwarded only when every Host header names what the URL names:
// a second Host header naming another destination is refused (RFC 9112 3.2: a request with
// more than one is a 400; an upstream that reads the last one would be sent elsewhere than the
// gateway checked), as is an allowed Host on a URL that names a denied host. Control: one
// agreeing Host header, in another case and with a trailing dot, is forwarded.
TEST_F(GatewayChecklistTest, EveryHostHeaderMustNameTheUrlsDestination) {
  Upstream web(Upstream::Mode::kHttp);
  Upstream evil(Upstream::Mode::kHttp);
  resolver_->names["web.test"] = {"127.0.0.1"};
  resolver_->names["evil.test"] = {"127.0.0.1"};
  const std::string w = "web.test:" + std::to_string(web.port());
  const std::string e = "evil.test:" + std::to_string(evil.port());
  StartSession({w}, {web.port(), evil.port()});
  const std::vector<std::string> refused = {
      "GET http://" + w + "/ HTTP/1.1\r\nHost: " + w + "\r\nHost: " + e + "\r\n\r\n",
      "GET http://" + w + "/ HTTP/1.1\r\nHost: " + w + "\r\nHost: " + w + "\r\n\r\n",
      "GET http://" + w + "/ HTTP/1.1\r\nHost: " + e + "\r\nHost: " + w + "\r\n\r\n",
      "GET http://" + e + "/ HTTP/1.1\r\nHost: " + w + "\r\n\r\n",
      "GET http://" + w + "/ HTTP/1.1\r\nHost: " + w + ", " + e + "\r\n\r\n",
      "GET http://" + w + "/ HTTP/1.1\r\nHost: " + w + "\r\n " + e + "\r\n\r\n",  // obs-fold
      "GET http://" + w + "/ HTTP/1.1\r\nHost : " + e + "\r\nHost: " + w + "\r\n\r\n",
      "GET http://" + w + "/ HTTP/1.1\r\nHost: " + w + "\nHost: " + e + "\r\n\r\n",
  };
  for (const std::string& request : refused) {
    Received r = Ask(proxy_port_, request);
    EXPECT_EQ(Status(r), "HTTP/1.1 400") << request << " -> " << r.bytes;
  }
  EXPECT_EQ(web.connections(), 0);
  EXPECT_EQ(evil.connections(), 0);
  // Control: one agreeing Host header.
  Received ok = Ask(proxy_port_, "GET http://WEB.test.:" + std::to_string(web.port()) +
                                     "/x HTTP/1.1\r\nHost: " + w + "\r\n\r\n");
  EXPECT_NE(ok.bytes.find("200 OK"), std::string::npos) << ok.bytes;
  ASSERT_TRUE(WaitFor([&] { return web.connections() == 1; }));
  EXPECT_TRUE(web.received().starts_with("GET /x HTTP/1.1\r\n")) << web.received();
  EXPECT_EQ(evil.connections(), 0);
}

// The transparent HTTP listener goes by the Host header: with two, it resets the connection
// rather than pick one. Control: the single Host header is forwarded.
TEST_F(GatewayChecklistTest, TheTransparentListenerRefusesTwoHostHeaders) {
  Upstream web(Upstream::Mode::kHttp);
  resolver_->names["web.test"] = {"127.0.0.1"};
  resolver_->names["evil.test"] = {"127.0.0.1"};
  StartSession({"web.test:" + std::to_string(web.port())}, {web.port()},
               [&](GatewayConfig& c) { c.http_port = web.port(); });
  for (const char* hosts :
       {"Host: web.test\r\nHost: evil.test\r\n", "Host: evil.test\r\nHost: web.test\r\n",
        "Host: web.test\r\nHost: web.test\r\n"}) {
    Received r = Ask(http_port_, std::string("GET / HTTP/1.1\r\n") + hosts + "\r\n");
    EXPECT_EQ(r.end, End::kReset) << hosts;
  }
  EXPECT_EQ(web.connections(), 0);
  Received ok = Ask(http_port_, "GET / HTTP/1.1\r\nHost: WEB.test.\r\n\r\n");
  EXPECT_NE(ok.bytes.find("200 OK"), std::string::npos) << ok.bytes;
}

// ---- Pipelining

// A request pipelined after an allowed one never rides the first one's connection: after an
// absolute-form request, the gateway forwards that one request (and its declared body) and
// reads nothing more, so a second request to a denied host reaches neither that host nor the
// allowed upstream, and its name is never even resolved. Control: the denied host's upstream
// is reachable when allowed, so its silence above is the gateway's doing.
TEST_F(GatewayChecklistTest, ARequestPipelinedAfterAnAllowedOneGoesNowhere) {
  Upstream web(Upstream::Mode::kHttp);
  Upstream denied(Upstream::Mode::kHttp);
  resolver_->names["web.test"] = {"127.0.0.1"};
  resolver_->names["denied.test"] = {"127.0.0.1"};
  const std::string w = "web.test:" + std::to_string(web.port());
  const std::string d = "denied.test:" + std::to_string(denied.port());
  const std::string second = "GET http://" + d + "/second HTTP/1.1\r\nHost: " + d + "\r\n\r\n";
  StartSession({w}, {web.port(), denied.port()});
  for (const std::string& first :
       {"GET http://" + w + "/first HTTP/1.1\r\nHost: " + w + "\r\n\r\n",
        // The body length covers nothing: the second request is not smuggled in as the body.
        "POST http://" + w + "/first HTTP/1.1\r\nHost: " + w + "\r\nContent-Length: 0\r\n\r\n",
        "POST http://" + w + "/first HTTP/1.1\r\nHost: " + w +
            "\r\nContent-Length: 3\r\n\r\nabc"}) {
    Received r = Ask(proxy_port_, first + second + second);
    EXPECT_NE(r.bytes.find("\r\n\r\nok"), std::string::npos) << r.bytes;
    EXPECT_EQ(r.bytes.find("HTTP/1.1", 1), std::string::npos) << "one answer only: " << r.bytes;
  }
  ASSERT_TRUE(WaitFor([&] { return web.connections() == 3; }));
  EXPECT_EQ(web.received().find("/second"), std::string::npos) << web.received();
  EXPECT_EQ(web.received().find("denied.test"), std::string::npos) << web.received();
  EXPECT_EQ(denied.connections(), 0);
  for (const std::string& name : resolver_->asked()) EXPECT_EQ(name, "web.test");
  // Control: allowed, the same second request on its own reaches the denied host's upstream.
  StartSession({w, d}, {web.port(), denied.port()});
  EXPECT_NE(Ask(proxy_port_, second).bytes.find("\r\n\r\nok"), std::string::npos);
  EXPECT_EQ(denied.connections(), 1);
}

// After a CONNECT, whatever follows the head is tunnel data for the allowed upstream: a second
// CONNECT to a denied host pipelined behind it is relayed into the tunnel as bytes (here echoed
// back) and never acted on, so the client gets exactly one 200 and the denied host nothing.
// The transparent HTTP listener forwards one request per connection like the proxy. Control:
// the second CONNECT on its own connection is a 403.
TEST_F(GatewayChecklistTest, AConnectPipelinedIntoATunnelIsTunnelData) {
  Upstream echo(Upstream::Mode::kEcho);
  Upstream denied(Upstream::Mode::kRecord);
  resolver_->names["echo.test"] = {"127.0.0.1"};
  resolver_->names["denied.test"] = {"127.0.0.1"};
  const std::string allowed = "echo.test:" + std::to_string(echo.port());
  const std::string d = "denied.test:" + std::to_string(denied.port());
  StartSession({allowed}, {echo.port(), denied.port()});
  const std::string second = ConnectRequest(d, d);
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), ConnectRequest(allowed, allowed) + second);
  EXPECT_EQ(ReadHead(client.get()), kEstablished);
  EXPECT_EQ(ReadAll(client.get(), second.size()).bytes, second);  // the echo of the bytes
  client.Reset();
  EXPECT_EQ(denied.connections(), 0);
  EXPECT_EQ(Status(Ask(proxy_port_, second)), "HTTP/1.1 403");  // control
  EXPECT_EQ(denied.connections(), 0);
  for (const std::string& name : resolver_->asked()) EXPECT_EQ(name, "echo.test");

  // The transparent listener: the second request (another Host) never reaches the upstream.
  Upstream web(Upstream::Mode::kHttp);
  resolver_->names["web.test"] = {"127.0.0.1"};
  StartSession({"web.test:" + std::to_string(web.port())}, {web.port()},
               [&](GatewayConfig& c) { c.http_port = web.port(); });
  Received r = Ask(http_port_,
                   "GET /first HTTP/1.1\r\nHost: web.test\r\n\r\n"
                   "GET /second HTTP/1.1\r\nHost: denied.test\r\n\r\n");
  EXPECT_NE(r.bytes.find("\r\n\r\nok"), std::string::npos) << r.bytes;
  ASSERT_TRUE(WaitFor([&] { return web.connections() == 1; }));
  EXPECT_TRUE(web.received().starts_with("GET /first ")) << web.received();
  EXPECT_EQ(web.received().find("/second"), std::string::npos) << web.received();
}

// ---- Requests to the gateway itself

// No request reaches one of the session's own listeners (the proxy, the transparent TLS and
// HTTP listeners), however it names it: by address under an address rule (CONNECT and
// absolute-form), as the IPv4-mapped IPv6 form, as 0.0.0.0 (which connects to the local
// host), or by a name that resolves to it (plain or IPv4-mapped) with the test allowance or an
// address rule for that port. Control: each of the same forms reaches an ordinary upstream.
TEST_F(GatewayChecklistTest, NoFormOfAddressReachesTheGatewaysOwnListeners) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["self.test"] = {"127.0.0.1"};
  resolver_->names["mapped.test"] = {"::ffff:127.0.0.1"};
  // The forms of a request for 127.0.0.1:`port`; each CONNECT, then one absolute-form GET.
  auto forms = [](uint16_t port) {
    const std::string p = std::to_string(port);
    return std::vector<std::string>{
        ConnectRequest("127.0.0.1:" + p, "127.0.0.1:" + p),
        ConnectRequest("[::ffff:127.0.0.1]:" + p, "[::ffff:127.0.0.1]:" + p),
        ConnectRequest("0.0.0.0:" + p, "0.0.0.0:" + p),
        ConnectRequest("self.test:" + p, "self.test:" + p),
        ConnectRequest("mapped.test:" + p, "mapped.test:" + p),
        "GET http://127.0.0.1:" + p + "/ HTTP/1.1\r\nHost: 127.0.0.1:" + p + "\r\n\r\n",
    };
  };
  auto allow = [](uint16_t port) {
    const std::string p = std::to_string(port);
    return std::vector<std::string>{"127.0.0.1:" + p, "0.0.0.0:" + p, "self.test:" + p,
                                    "mapped.test:" + p};
  };
  for (const char* which : {"proxy", "tls", "http"}) {
    uint16_t own = 0;
    StartSession({}, {}, [&](GatewayConfig& c) {
      own = std::string(which) == "proxy" ? proxy_port_
            : std::string(which) == "tls" ? tls_port_
                                          : http_port_;
      c.allow = *AllowList::Parse(allow(own));
      c.test_private_upstreams.insert({asio::ip::make_address("127.0.0.1"), own});
    });
    for (const std::string& request : forms(own)) {
      Received r = Ask(proxy_port_, request);
      EXPECT_EQ(Status(r), "HTTP/1.1 403") << which << ": " << request << " -> " << r.bytes;
    }
    // Nothing looped: the only connections the session saw were the probes themselves.
    EXPECT_EQ(session_->counters().allowed.load(), 0u) << which;
  }
  // Control: the same forms aimed at an ordinary loopback upstream all get through.
  StartSession(allow(echo.port()), {echo.port()});
  for (const std::string& request : forms(echo.port())) {
    UniqueFd client = Dial(proxy_port_);
    SendAll(client.get(), request);
    const std::string head = ReadHead(client.get());  // a tunnel, or the echoed GET
    EXPECT_TRUE(head == kEstablished || head.starts_with("GET / HTTP/1.1\r\n")) << request;
  }
  EXPECT_EQ(echo.connections(), 6);
}

// ---- A second proxy through an allowed tunnel

// A loopback stand-in for an open proxy on the internet: it takes one CONNECT for
// 127.0.0.1:<port>, connects there, answers 200 and relays both ways.
class SecondProxy {
 public:
  SecondProxy() : listener_(Listen(SOCK_STREAM)), port_(PortOf(listener_.get())) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~SecondProxy() { thread_.join(); }
  uint16_t port() const { return port_; }

 private:
  void Serve() {
    pollfd p{listener_.get(), POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return;
    UniqueFd in(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::string head = ReadHead(in.get());
    const size_t at = head.find("127.0.0.1:");
    if (at == std::string::npos) return;
    UniqueFd out = Dial(static_cast<uint16_t>(std::stoi(head.substr(at + 10))));
    SendAll(in.get(), "HTTP/1.1 200 OK\r\n\r\n");
    pollfd fds[2] = {{in.get(), POLLIN, 0}, {out.get(), POLLIN, 0}};
    char buf[4096];
    while (poll(fds, 2, 5000) > 0) {
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        ssize_t n = recv(fds[i].fd, buf, sizeof buf, 0);
        if (n <= 0) return;
        SendAll(fds[1 - i].fd, std::string_view(buf, static_cast<size_t>(n)));
      }
    }
  }

  UniqueFd listener_;
  uint16_t port_;
  std::thread thread_;
};

// What holds: the gateway connects only to the allowed host's checked address and makes no
// decision on the tunnel's contents; an absolute-form request cannot point an allowed proxy
// elsewhere (origin-form upstream, and a Host naming another destination is a 400); a denied
// host named directly is a 403. What cannot be held: a tunnel is opaque, so an allowed host
// that is itself a proxy takes a CONNECT inside the tunnel to anywhere it can reach (shown
// here: the denied server answers through it). Only the allowlist's choice of hosts prevents
// that; the audit names the allowed proxy, never the inner destination.
TEST_F(GatewayChecklistTest, ASecondProxyThroughAnAllowedTunnelIsBeyondTheGateway) {
  Upstream secret(Upstream::Mode::kHttp);
  SecondProxy second;
  resolver_->names["proxy2.test"] = {"127.0.0.1"};
  resolver_->names["secret.test"] = {"127.0.0.1"};
  const std::string p2 = "proxy2.test:" + std::to_string(second.port());
  const std::string s = "secret.test:" + std::to_string(secret.port());
  StartSession({p2}, {second.port(), secret.port()});
  // Holds: named directly, or as the Host of a request to the allowed proxy.
  EXPECT_EQ(Status(Ask(proxy_port_, ConnectRequest(s, s))), "HTTP/1.1 403");
  EXPECT_EQ(Status(Ask(proxy_port_, "GET http://" + p2 + "/ HTTP/1.1\r\nHost: " + s + "\r\n\r\n")),
            "HTTP/1.1 400");
  EXPECT_EQ(secret.connections(), 0);
  // Cannot hold: through the tunnel to the allowed proxy.
  UniqueFd client = Dial(proxy_port_);
  SendAll(client.get(), ConnectRequest(p2, p2));
  ASSERT_EQ(ReadHead(client.get()), kEstablished);
  const std::string inner = "127.0.0.1:" + std::to_string(secret.port());
  SendAll(client.get(), ConnectRequest(inner, inner));
  EXPECT_EQ(ReadHead(client.get()), "HTTP/1.1 200 OK\r\n\r\n");  // the second proxy's answer
  SendAll(client.get(), "GET / HTTP/1.1\r\nHost: secret.test\r\n\r\n");
  EXPECT_NE(ReadAll(client.get()).bytes.find("\r\n\r\nok"), std::string::npos);
  client.Reset();
  EXPECT_EQ(secret.connections(), 1);
  ASSERT_TRUE(WaitFor([&] { return session_->counters().allowed.load() == 1; }));
  for (const std::string& name : resolver_->asked()) EXPECT_EQ(name, "proxy2.test");
  ASSERT_TRUE(WaitFor([&] { return verdicts().size() == 3; }));
  EXPECT_TRUE(verdicts().back().allowed);
  EXPECT_EQ(verdicts().back().name, "proxy2.test");
}

// ---- SNI

// The transparent TLS listener decides by the ClientHello's server name alone and connects to
// the address the gateway resolves for that name, never to one the client picked: a client
// that looked up a.test (and dialled its synthetic address) but sends SNI b.test reaches b.test
// (allowed too) and not a.test's upstream; with a denied SNI, or an address as the SNI, it
// reaches nothing. Without SNI: egress_transparent_test.cc. Control: SNI a.test reaches a.test,
// also written in capitals with a trailing dot.
TEST_F(GatewayChecklistTest, SniDecidesAndTheDialledMappingDoesNot) {
  Upstream a(Upstream::Mode::kRecord);
  // b.test's upstream: the same port on another loopback address.
  Upstream b(Upstream::Mode::kRecord, Listen(SOCK_STREAM, "127.0.0.2", a.port()));
  const uint16_t port = a.port();
  resolver_->names["a.test"] = {"127.0.0.1"};
  resolver_->names["b.test"] = {"127.0.0.2"};
  resolver_->names["evil.test"] = {"127.0.0.1"};
  const std::string p = std::to_string(port);
  StartSession({"a.test:" + p, "b.test:" + p}, {port}, [&](GatewayConfig& c) {
    c.tls_port = port;
    c.test_private_upstreams.insert({asio::ip::make_address("127.0.0.2"), port});
  });
  UniqueFd to_b = Dial(tls_port_);
  const std::string hello_b = ClientHello("b.test");
  SendAll(to_b.get(), hello_b);
  ASSERT_TRUE(WaitFor([&] { return b.received().size() >= hello_b.size(); }));
  EXPECT_EQ(b.received(), hello_b);
  EXPECT_EQ(a.connections(), 0);
  for (const char* sni : {"evil.test", "127.0.0.1", "a.test.evil.test"}) {
    UniqueFd client = Dial(tls_port_);
    SendAll(client.get(), ClientHello(sni));
    EXPECT_EQ(ReadAll(client.get()).end, End::kReset) << sni;
  }
  EXPECT_EQ(a.connections(), 0);
  EXPECT_EQ(b.connections(), 1);
  // Control.
  for (const char* sni : {"a.test", "A.TEST."}) {
    UniqueFd client = Dial(tls_port_);
    SendAll(client.get(), ClientHello(sni));
    EXPECT_TRUE(WaitFor([&] { return a.connections() == (sni[0] == 'a' ? 1 : 2); })) << sni;
  }
}

// ---- IDN and trailing dots

// Names compare in one canonical form: punycode ("xn--") names match their rule in any case
// and with a trailing dot; a name in UTF-8 is refused (400, naming punycode) rather than
// converted, so no client-side IDNA mapping can make it equal to a rule; a trailing dot, on
// the rule or the request, is folded once, and the gateway resolves the name without it; two
// dots or a leading dot are malformed. Control: the canonical spellings get their tunnels.
TEST_F(GatewayChecklistTest, IdnAndTrailingDotNamesCompareCanonically) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["xn--bcher-kva.test"] = {"127.0.0.1"};
  resolver_->names["echo.test"] = {"127.0.0.1"};
  const std::string p = std::to_string(echo.port());
  StartSession({"xn--bcher-kva.test:" + p, "echo.test.:" + p}, {echo.port()});
  const std::vector<std::string> relayed = {"xn--bcher-kva.test:" + p, "XN--BCHER-KVA.test.:" + p,
                                            "echo.test:" + p, "echo.test.:" + p, "ECHO.TEST.:" + p};
  for (const std::string& authority : relayed) {
    UniqueFd client = Dial(proxy_port_);
    SendAll(client.get(), ConnectRequest(authority, authority));
    EXPECT_EQ(ReadHead(client.get()), kEstablished) << authority;
  }
  EXPECT_TRUE(WaitFor([&] { return echo.connections() == 5; }));
  for (const std::string& name : resolver_->asked()) {
    EXPECT_TRUE(name == "xn--bcher-kva.test" || name == "echo.test") << name;
  }
  const std::string utf8 =
      "b\xc3\xbc"
      "cher.test:" +
      p;
  Received r = Ask(proxy_port_, ConnectRequest(utf8, utf8));
  EXPECT_EQ(Status(r), "HTTP/1.1 400") << r.bytes;
  for (const std::string& authority :
       {"echo.test..:" + p, ".echo.test:" + p, "echo..test:" + p, "xn--bcher-kva..test:" + p}) {
    EXPECT_EQ(Status(Ask(proxy_port_, ConnectRequest(authority, authority))), "HTTP/1.1 400")
        << authority;
  }
  EXPECT_EQ(echo.connections(), 5);
}

}  // namespace
}  // namespace mp::egress::testing
