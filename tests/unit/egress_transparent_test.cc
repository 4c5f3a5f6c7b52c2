// The egress gateway's engine (src/egress/egress_session.h, issue 14) over loopback: the
// transparent TLS and HTTP listeners, and the per-session limits. Each refusal comes with a
// control where the same probe, allowed or within the limit, gets through.
#include <gtest/gtest.h>

#include <string>

#include "egress_fixture.h"

namespace mp::egress::testing {
namespace {

using GatewayTransparentTest = GatewayFixture;

// Closed by the gateway without a byte: reset, or EOF when the client's own send already
// consumed the reset (EPIPE); never the client's 5 s timeout.
bool ClosedAtOnce(const Received& r) { return r.bytes.empty() && r.end != End::kTimeout; }

TEST_F(GatewayTransparentTest, TlsClientHelloIsForwardedUnchangedToTheSniName) {
  Upstream sink(Upstream::Mode::kRecord);
  resolver_->names["tls.test"] = {"127.0.0.1"};
  StartSession({"tls.test:" + std::to_string(sink.port())}, {sink.port()},
               [&](GatewayConfig& c) { c.tls_port = sink.port(); });
  std::string hello = ClientHello("tls.test");
  ASSERT_GT(hello.size(), 100u);
  UniqueFd client = Dial(tls_port_);
  SendAll(client.get(), hello.substr(0, 7));  // split: the name is read across reads
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  SendAll(client.get(), hello.substr(7));
  ASSERT_TRUE(WaitFor([&] { return sink.received().size() >= hello.size(); }));
  EXPECT_EQ(sink.received(), hello);
  EXPECT_EQ(session_->counters().allowed.load(), 1u);
}

TEST_F(GatewayTransparentTest, TlsWithoutSniOrWithAnotherNameIsReset) {
  Upstream sink(Upstream::Mode::kRecord);
  resolver_->names["tls.test"] = {"127.0.0.1"};
  resolver_->names["other.test"] = {"127.0.0.1"};
  StartSession({"tls.test:" + std::to_string(sink.port())}, {sink.port()},
               [&](GatewayConfig& c) { c.tls_port = sink.port(); });
  for (const char* sni : {"", "other.test"}) {
    UniqueFd client = Dial(tls_port_);
    SendAll(client.get(), ClientHello(sni));
    Received r = ReadAll(client.get());
    EXPECT_EQ(r.end, End::kReset) << "sni '" << sni << "'";
  }
  EXPECT_EQ(sink.connections(), 0);
  EXPECT_EQ(session_->counters().denied.load(), 2u);
  // Control: the allowed name reaches the upstream.
  UniqueFd client = Dial(tls_port_);
  SendAll(client.get(), ClientHello("tls.test"));
  EXPECT_TRUE(WaitFor([&] { return sink.connections() == 1; }));
}

TEST_F(GatewayTransparentTest, HttpGoesByTheHostHeader) {
  Upstream web(Upstream::Mode::kHttp);
  resolver_->names["web.test"] = {"127.0.0.1"};
  resolver_->names["other.test"] = {"127.0.0.1"};
  StartSession({"web.test:" + std::to_string(web.port())}, {web.port()},
               [&](GatewayConfig& c) { c.http_port = web.port(); });
  UniqueFd denied = Dial(http_port_);
  SendAll(denied.get(), "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n");
  EXPECT_EQ(ReadAll(denied.get()).end, End::kReset);
  UniqueFd other_port = Dial(http_port_);  // a Host port other than the listener's
  SendAll(other_port.get(), "GET / HTTP/1.1\r\nHost: web.test:1\r\n\r\n");
  EXPECT_EQ(ReadAll(other_port.get()).end, End::kReset);
  EXPECT_EQ(web.connections(), 0);
  // Control: the allowed Host is forwarded.
  UniqueFd client = Dial(http_port_);
  SendAll(client.get(), "GET /x HTTP/1.1\r\nHost: web.test\r\n\r\n");
  EXPECT_NE(ReadAll(client.get()).bytes.find("200 OK"), std::string::npos);
  EXPECT_TRUE(web.received().starts_with("GET /x HTTP/1.1\r\n"));
}

TEST_F(GatewayTransparentTest, ConnectionCapRefusesTheNextConnectionUntilOneCloses) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["echo.test"] = {"127.0.0.1"};
  std::string authority = "echo.test:" + std::to_string(echo.port());
  StartSession({authority}, {echo.port()}, [](GatewayConfig& c) { c.limits.max_connections = 1; });
  auto tunnel = [&] {
    UniqueFd client = Dial(proxy_port_);
    SendAll(client.get(), "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
    return client;
  };
  UniqueFd first = tunnel();
  EXPECT_EQ(ReadHead(first.get()), "HTTP/1.1 200 Connection established\r\n\r\n");
  UniqueFd second = tunnel();
  EXPECT_TRUE(ClosedAtOnce(ReadAll(second.get())));
  // Control: once the first closes, a connection gets through again.
  first.Reset();
  ASSERT_TRUE(WaitFor([&] { return session_->counters().open_connections.load() == 0; }));
  UniqueFd third = tunnel();
  EXPECT_EQ(ReadHead(third.get()), "HTTP/1.1 200 Connection established\r\n\r\n");
}

// Sends `size` bytes through an echo tunnel and returns how many came back.
size_t EchoThrough(uint16_t proxy_port, const std::string& authority, size_t size) {
  UniqueFd client = Dial(proxy_port);
  SendAll(client.get(), "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  if (ReadHead(client.get()).find(" 200 ") == std::string::npos) return 0;
  SendAll(client.get(), std::string(size, 'x'));
  return ReadAll(client.get(), size).bytes.size();
}

TEST_F(GatewayTransparentTest, ByteBudgetClosesTheRelayWhenSpent) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["echo.test"] = {"127.0.0.1"};
  std::string authority = "echo.test:" + std::to_string(echo.port());
  StartSession({authority}, {echo.port()},
               [](GatewayConfig& c) { c.limits.max_total_bytes = 1000; });
  EXPECT_LT(EchoThrough(proxy_port_, authority, 4000), 1000u);
  EXPECT_LE(session_->counters().bytes_up.load() + session_->counters().bytes_down.load(), 1000u);
  // Control: the same transfer within the budget comes back whole.
  StartSession({authority}, {echo.port()},
               [](GatewayConfig& c) { c.limits.max_total_bytes = 100'000; });
  EXPECT_EQ(EchoThrough(proxy_port_, authority, 4000), 4000u);
}

TEST_F(GatewayTransparentTest, ConnectionRateIsLimited) {
  StartSession({"web.test:80"}, {}, [](GatewayConfig& c) {
    c.limits.connections_per_second = 0.001;
    c.limits.connection_burst = 2;
  });
  auto probe = [&] {
    UniqueFd client = Dial(proxy_port_);
    SendAll(client.get(), "GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n");
    return ReadAll(client.get());
  };
  // Within the burst each connection gets an answer (a 403: the name does not resolve).
  EXPECT_TRUE(probe().bytes.starts_with("HTTP/1.1 403"));
  EXPECT_TRUE(probe().bytes.starts_with("HTTP/1.1 403"));
  // Past it the connection is reset before a byte is read.
  EXPECT_TRUE(ClosedAtOnce(probe()));
}

TEST_F(GatewayTransparentTest, IdleRelayIsClosedAndStopClosesEverything) {
  Upstream echo(Upstream::Mode::kEcho);
  resolver_->names["echo.test"] = {"127.0.0.1"};
  std::string authority = "echo.test:" + std::to_string(echo.port());
  StartSession({authority}, {echo.port()},
               [](GatewayConfig& c) { c.limits.idle_timeout = std::chrono::milliseconds(400); });
  auto tunnel = [&] {
    UniqueFd client = Dial(proxy_port_);
    SendAll(client.get(), "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
    EXPECT_EQ(ReadHead(client.get()), "HTTP/1.1 200 Connection established\r\n\r\n");
    return client;
  };
  // Control: a tunnel in use stays open past the idle timeout.
  UniqueFd busy = tunnel();
  for (int i = 0; i < 8; ++i) {  // 8 x 80 ms: longer than the 400 ms timeout
    SendAll(busy.get(), "x");
    EXPECT_EQ(ReadAll(busy.get(), 1).bytes, "x");
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
  }
  // A silent one is closed (not left to the client's 5 s timeout).
  Received idle = ReadAll(busy.get());
  EXPECT_NE(idle.end, End::kTimeout);
  EXPECT_TRUE(idle.bytes.empty());
  // Stop() closes live relays at once.
  StartSession({authority}, {echo.port()});
  UniqueFd live = tunnel();
  asio::post(io_, [s = session_] { s->Stop(); });
  EXPECT_NE(ReadAll(live.get()).end, End::kTimeout);
}

}  // namespace
}  // namespace mp::egress::testing
