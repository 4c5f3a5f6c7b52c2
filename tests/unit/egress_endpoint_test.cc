// The credential gateway's model endpoints (src/egress/endpoint_front.cc, issue 14) over
// loopback: a session client speaks plain HTTP/1.1 with a dummy key to the endpoint listener; a
// TLS stub upstream on 127.0.0.1 with a certificate from the test PKI records every request
// head and body it gets. Each refusal has a control where the same request gets through.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <poll.h>

#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "egress_fixture.h"
#include "egress_tls_upstream.h"
#include "temp_dir.h"
#include "test_pki.h"

namespace mp::egress::testing {
namespace {

std::string Get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: " + kDummyKey + "\r\n" +
         extra + "\r\n";
}

// Appends what arrives on `fd` to `got` until it holds `needle` or the connection ends.
void ReceiveUntil(int fd, const std::string& needle, std::string& got) {
  char buf[4096];
  while (got.find(needle) == std::string::npos) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    got.append(buf, static_cast<size_t>(n));
  }
}

class EndpointTest : public GatewayFixture {
 protected:
  EndpointTest()
      : ca_(test::MakeSelfSigned({{"MonkeyProof test CA"}, true, "", 1})),
        cert_(test::MakeSigned({{"model.test"}, false, "DNS:model.test", 2}, ca_)),
        dir_("egress-endpoint") {
    resolver_->names["model.test"] = {"127.0.0.1"};
  }

  // A session with one endpoint, https://model.test:<port><prefix>, trusting `trust`'s CA
  // file; `private_ok` lets model.test resolve to the loopback stub.
  void StartEndpoint(uint16_t port, const std::string& prefix = "/v1",
                     const test::PemPair* trust = nullptr, bool private_ok = true) {
    const std::string ca_file = dir_.Write("ca.pem", (trust ? *trust : ca_).cert);
    const std::string url = "https://model.test:" + std::to_string(port) + prefix;
    auto upstream = ParseUpstreamUrl(url);
    ASSERT_TRUE(upstream) << upstream.error().what;
    StartSession({}, private_ok ? std::vector<uint16_t>{port} : std::vector<uint16_t>{},
                 [&](GatewayConfig& config) {
                   config.endpoints.push_back({*upstream, header_, value_});
                   config.upstream_ca_file = ca_file;
                   config.limits.idle_timeout = idle_timeout_;
                   config.limits.connect_timeout = connect_timeout_;
                   config.limits.max_connections = max_connections_;
                 });
    ASSERT_EQ(endpoint_ports_.size(), 1u);
  }

  test::PemPair ca_;
  test::PemPair cert_;
  test::TempDir dir_;
  std::chrono::milliseconds connect_timeout_{10'000};
  std::chrono::milliseconds idle_timeout_{5'000};
  std::string header_ = "x-api-key";
  std::string value_ = kRealKey;
  uint32_t max_connections_ = 64;
};

TEST_F(EndpointTest, TheRealKeyReplacesTheDummyAndHostAndPrefixAreTheUpstreams) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  // Two copies of the credential header, one in another case: both go.
  SendAll(client.get(),
          "POST /messages?beta=1 HTTP/1.1\r\nHost: 127.0.0.1:3129\r\n"
          "x-api-key: " +
              std::string(kDummyKey) + "\r\nX-API-Key: second-dummy\r\n" +
              "anthropic-version: 2023-06-01\r\nContent-Length: 5\r\n\r\nhello");
  std::string carry;
  auto response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 200u) << response;
  EXPECT_EQ(response.body(), "got 5 bytes");
  const std::vector<Seen> seen = upstream.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].Values("x-api-key"), std::vector<std::string>{kRealKey});
  EXPECT_EQ(seen[0].Values("host"),
            std::vector<std::string>{"model.test:" + std::to_string(upstream.port())});
  EXPECT_EQ(seen[0].target, "/v1/messages?beta=1");
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].body, "hello");
  EXPECT_EQ(seen[0].Values("anthropic-version"), std::vector<std::string>{"2023-06-01"});
  for (const auto& [name, value] : seen[0].fields) {
    EXPECT_EQ(value.find("dummy"), std::string::npos) << name << ": " << value;
  }
  ASSERT_TRUE(WaitFor([&] { return !verdicts().empty(); }));
  const Verdict v = verdicts().back();
  EXPECT_EQ(v.listener, "endpoint");
  EXPECT_EQ(v.name, "model.test");
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.bytes_up, 5u);
  EXPECT_EQ(session_->counters().gateway_requests.load(), 1u);
  EXPECT_GE(session_->counters().bytes_down.load(), 11u);
}

TEST_F(EndpointTest, EveryRequestOnAKeptAliveConnectionGetsTheRealKey) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port(), "");
  UniqueFd client = Dial(endpoint_ports_[0]);
  std::string carry;
  SendAll(client.get(), Get("/first"));
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  SendAll(client.get(), Get("/second"));
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  // Pipelined: two at once.
  SendAll(client.get(), Get("/third") + Get("/fourth"));
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  const std::vector<Seen> seen = upstream.seen();
  ASSERT_EQ(seen.size(), 4u);
  const char* targets[] = {"/first", "/second", "/third", "/fourth"};
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].target, targets[i]);
    EXPECT_EQ(seen[i].Values("x-api-key"), std::vector<std::string>{kRealKey}) << i;
    EXPECT_EQ(seen[i].connection, 1) << "one upstream connection for the client connection";
  }
  EXPECT_EQ(upstream.handshakes(), 1);
  EXPECT_EQ(session_->counters().gateway_requests.load(), 4u);
}

// The upstream closes its side after a response (its keep-alive timeout): the next request on
// the client's connection goes over a new upstream connection instead of failing.
TEST_F(EndpointTest, AnUpstreamThatClosedBetweenRequestsIsReopened) {
  TlsUpstream upstream(cert_, [](const Request& request, Stream& stream) {
    DefaultAnswer(request, stream);
    throw std::runtime_error("close after each response");  // the stub then closes
  });
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  std::string carry;
  SendAll(client.get(), Get("/first"));
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the upstream's close arrives
  SendAll(client.get(), Get("/second"));
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  const std::vector<Seen> seen = upstream.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].connection, 2);
  EXPECT_EQ(seen[1].Values("x-api-key"), std::vector<std::string>{kRealKey});
}

// The answer to HEAD has a Content-Length and no body: the gateway frames it as such, and the
// next request on the connection is answered (were the 10 announced bytes awaited, the GET
// would wait for them and time out).
TEST_F(EndpointTest, AHeadAnswerHasNoBodyAndTheConnectionGoesOn) {
  TlsUpstream upstream(cert_, [](const Request& request, Stream& stream) {
    if (request.method() != http::verb::head) return DefaultAnswer(request, stream);
    http::response<http::empty_body> head(http::status::ok, request.version());
    head.content_length(10);
    head.set("X-Head", "1");
    head.keep_alive(true);
    http::write(stream, head);
  });
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  std::string carry;
  SendAll(client.get(), "HEAD /h HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + Get("/g"));
  auto head = ReadResponse(client.get(), carry, /*to_head=*/true);
  EXPECT_EQ(head.result_int(), 200u) << head;
  EXPECT_EQ(head["X-Head"], "1");
  EXPECT_EQ(head[http::field::content_length], "10");
  EXPECT_EQ(head.body(), "");
  auto get = ReadResponse(client.get(), carry);
  EXPECT_EQ(get.result_int(), 200u) << get;
  EXPECT_EQ(get.body(), "got 0 bytes");
  const std::vector<Seen> seen = upstream.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "HEAD");
  EXPECT_EQ(seen[1].target, "/v1/g");
  EXPECT_EQ(seen[1].connection, 1);
}

// "Expect: 100-continue": the gateway says "go on" itself and the upstream never sees Expect
// (it would answer 100 on a connection whose request body is already on its way).
TEST_F(EndpointTest, ExpectContinueIsAnsweredHere) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(),
          "POST /m HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
          "Content-Length: 5\r\n\r\n");
  EXPECT_EQ(ReadHead(client.get()), "HTTP/1.1 100 Continue\r\n\r\n");
  SendAll(client.get(), "hello");
  std::string carry;
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  const std::vector<Seen> seen = upstream.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, "hello");
  EXPECT_TRUE(seen[0].Values("expect").empty());
}

// Server-sent events: the first event reaches the client while the upstream still holds the
// response open.
TEST_F(EndpointTest, AStreamedResponseArrivesAsItIsSent) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  TlsUpstream upstream(cert_, [released](const Request& request, Stream& stream) {
    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string first = "event: a\ndata: first\n\n";
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", first.size());
    boost::asio::write(stream, boost::asio::buffer(head + size + first + "\r\n"));
    released.wait_for(std::chrono::seconds(10));
    const std::string second = "event: b\ndata: second\n\n";
    std::snprintf(size, sizeof size, "%zx\r\n", second.size());
    boost::asio::write(stream, boost::asio::buffer(std::string(size) + second + "\r\n0\r\n\r\n"));
    (void)request;
  });
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/stream"));
  std::string got;
  ReceiveUntil(client.get(), "data: first", got);
  EXPECT_NE(got.find("data: first"), std::string::npos) << got;
  EXPECT_EQ(got.find("data: second"), std::string::npos) << "the upstream has not sent it yet";
  release.set_value();
  ReceiveUntil(client.get(), "0\r\n\r\n", got);
  EXPECT_NE(got.find("data: second"), std::string::npos) << got;
  EXPECT_TRUE(got.ends_with("0\r\n\r\n")) << got;
}

// A client that goes away while a response streams ends the exchange at once: the upstream's
// connection is closed long before the idle timeout (60 s here), so a model stops generating
// for nobody. (Control, run by hand: without EndpointFront::WatchClient the close comes only
// with the idle timeout.)
TEST_F(EndpointTest, AClientThatLeavesMidStreamEndsTheUpstreamConnection) {
  idle_timeout_ = std::chrono::seconds(60);
  auto closed = std::make_shared<std::promise<void>>();
  std::future<void> upstream_closed = closed->get_future();
  TlsUpstream upstream(cert_, [closed](const Request&, Stream& stream) {
    const std::string first = "event: a\ndata: first\n\n";
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", first.size());
    boost::asio::write(stream, boost::asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Type: "
                                                               "text/event-stream\r\nTransfer-"
                                                               "Encoding: chunked\r\n\r\n") +
                                                   size + first + "\r\n"));
    char byte = 0;
    boost::system::error_code ec;
    boost::asio::read(stream, boost::asio::buffer(&byte, 1), ec);  // until the gateway closes
    closed->set_value();
  });
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/stream"));
  std::string got;
  ReceiveUntil(client.get(), "data: first", got);
  ASSERT_NE(got.find("data: first"), std::string::npos) << got;
  client.Reset();
  EXPECT_EQ(upstream_closed.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "the upstream connection outlived the client's";
}

TEST_F(EndpointTest, AOneMebibyteBodyArrivesIntactWithLengthAndChunked) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port());
  std::string body(1 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + (i * 7919) % 26);
  UniqueFd client = Dial(endpoint_ports_[0]);
  std::string carry;
  SendAll(client.get(), "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body);
  auto response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_EQ(response.body(), "got 1048576 bytes");
  // The same bytes chunked, in uneven chunks.
  std::string chunked = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t at = 0; at < body.size();) {
    const size_t n = std::min<size_t>(body.size() - at, 1000 + at % 70000);
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", n);
    chunked += size + body.substr(at, n) + "\r\n";
    at += n;
  }
  chunked += "0\r\n\r\n";
  SendAll(client.get(), chunked);
  response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 200u);
  const std::vector<Seen> seen = upstream.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[0].body == body) << seen[0].body.size();
  EXPECT_TRUE(seen[1].body == body) << seen[1].body.size();
  EXPECT_EQ(seen[0].Values("content-length"), std::vector<std::string>{"1048576"});
  EXPECT_EQ(seen[1].Values("transfer-encoding"), std::vector<std::string>{"chunked"});
  EXPECT_GE(session_->counters().bytes_up.load(), 2u << 20);
}

// The upstream's certificate chains to a CA the gateway does not trust: 502, and no request
// reaches it. Control: trusting that CA, the same request goes through.
TEST_F(EndpointTest, AnUntrustedUpstreamCertificateIs502AndTheUpstreamSeesNothing) {
  const test::PemPair other_ca = test::MakeSelfSigned({{"Another CA"}, true, "", 7});
  const test::PemPair other_cert =
      test::MakeSigned({{"model.test"}, false, "DNS:model.test", 8}, other_ca);
  {
    TlsUpstream upstream(other_cert);
    StartEndpoint(upstream.port());  // trusts ca_, not other_ca
    UniqueFd client = Dial(endpoint_ports_[0]);
    SendAll(client.get(), Get("/secret"));
    std::string carry;
    auto response = ReadResponse(client.get(), carry);
    EXPECT_EQ(response.result_int(), 502u) << response;
    EXPECT_NE(response.body().find("model.test"), std::string::npos) << response.body();
    EXPECT_NE(response.body().find("TLS handshake failed"), std::string::npos) << response.body();
    EXPECT_EQ(response.body().find(kRealKey), std::string::npos);
    EXPECT_TRUE(upstream.seen().empty());
    EXPECT_EQ(upstream.handshakes(), 0);
    ASSERT_TRUE(WaitFor([&] { return !verdicts().empty(); }));
    EXPECT_FALSE(verdicts().back().allowed);
    EXPECT_EQ(verdicts().back().reason.find(kRealKey), std::string::npos);
  }
  TlsUpstream upstream(other_cert);
  StartEndpoint(upstream.port(), "/v1", &other_ca);
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/secret"));
  std::string carry;
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  EXPECT_EQ(upstream.seen().size(), 1u);
}

// A certificate from the trusted CA for another host name: 502. The control is every other
// test here (the same CA, the right name).
TEST_F(EndpointTest, ACertificateForAnotherNameIs502) {
  const test::PemPair wrong = test::MakeSigned({{"other.test"}, false, "DNS:other.test", 3}, ca_);
  TlsUpstream upstream(wrong);
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/secret"));
  std::string carry;
  auto response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 502u) << response;
  EXPECT_NE(response.body().find("TLS handshake failed"), std::string::npos) << response.body();
  EXPECT_TRUE(upstream.seen().empty());
  // Control, same test: the right name from the same CA.
  TlsUpstream right(cert_);
  StartEndpoint(right.port());
  UniqueFd again = Dial(endpoint_ports_[0]);
  SendAll(again.get(), Get("/secret"));
  carry.clear();
  EXPECT_EQ(ReadResponse(again.get(), carry).result_int(), 200u);
  EXPECT_EQ(right.seen().size(), 1u);
}

// The upstream name resolves to loopback, which the gateway does not reach unless told (here
// test_private_upstreams): 502 naming why. Control: with it, 200.
TEST_F(EndpointTest, AnUpstreamResolvingToANonPublicAddressIs502) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port(), "/v1", nullptr, /*private_ok=*/false);
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/x"));
  std::string carry;
  auto response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 502u) << response;
  EXPECT_NE(response.body().find("does not reach"), std::string::npos) << response.body();
  EXPECT_EQ(upstream.connections(), 0);
  StartEndpoint(upstream.port());
  UniqueFd again = Dial(endpoint_ports_[0]);
  SendAll(again.get(), Get("/x"));
  carry.clear();
  EXPECT_EQ(ReadResponse(again.get(), carry).result_int(), 200u);
}

TEST_F(EndpointTest, AbsoluteFormConnectAndOversizedHeadsAreRefusedAndReachNothing) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port());
  struct Case {
    std::string request;
    unsigned status;
    const char* why;
  };
  const Case cases[] = {
      {"GET http://evil.test/x HTTP/1.1\r\nHost: evil.test\r\n\r\n", 400, "origin-form"},
      {"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n", 400, "CONNECT"},
      {"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "origin-form"},
      {"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "chunked"},
      {"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       400, "malformed"},
      {"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n", 431,
       "exceeds"},
  };
  for (const Case& c : cases) {
    UniqueFd client = Dial(endpoint_ports_[0]);
    SendAll(client.get(), c.request);
    std::string carry;
    auto response = ReadResponse(client.get(), carry);
    EXPECT_EQ(response.result_int(), c.status) << c.request.substr(0, 40) << "\n" << response;
    EXPECT_NE(response.body().find(c.why), std::string::npos) << response.body();
  }
  EXPECT_EQ(upstream.connections(), 0);
  EXPECT_TRUE(upstream.seen().empty());
  // Control: an origin-form request with a head just under the limit goes through.
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/x", "X-Big: " + std::string(15000, 'a') + "\r\n"));
  std::string carry;
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  EXPECT_EQ(upstream.seen().size(), 1u);
}

// An upstream that never answers the TCP handshake: 504 after the connect timeout, naming the
// upstream. (The stub's accept queue is full, so the kernel drops further SYNs.)
TEST_F(EndpointTest, AnUpstreamThatNeverAnswersIs504) {
  UniqueFd full(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(full.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(full.get(), 0), 0);
  const uint16_t port = PortOf(full.get());
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < 3; ++i) {
    fillers.emplace_back(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    address.sin_port = htons(port);
    (void)connect(fillers.back().get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  connect_timeout_ = std::chrono::milliseconds(300);
  StartEndpoint(port);
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/x"));
  std::string carry;
  auto response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 504u) << response;
  EXPECT_NE(response.body().find("model.test"), std::string::npos) << response.body();
  EXPECT_NE(response.body().find("timed out"), std::string::npos) << response.body();
}

// The session's connection slots count endpoint connections like any other: with one slot
// held, a second client is closed at once with a verdict; once the slot is free, served.
TEST_F(EndpointTest, EndpointConnectionsTakeTheSessionsSlots) {
  TlsUpstream upstream(cert_);
  max_connections_ = 1;
  StartEndpoint(upstream.port());
  UniqueFd first = Dial(endpoint_ports_[0]);
  std::string carry;
  SendAll(first.get(), Get("/one"));
  EXPECT_EQ(ReadResponse(first.get(), carry).result_int(), 200u);
  UniqueFd second = Dial(endpoint_ports_[0]);
  SendAll(second.get(), Get("/two"));
  const Received refused = ReadAll(second.get());
  EXPECT_NE(refused.end, End::kTimeout);  // closed at once, not left waiting
  EXPECT_EQ(refused.bytes, "");
  ASSERT_TRUE(WaitFor([&] {
    for (const Verdict& v : verdicts()) {
      if (!v.allowed && v.listener == "endpoint") return true;
    }
    return false;
  }));
  first.Reset();
  ASSERT_TRUE(WaitFor([&] { return session_->counters().open_connections.load() == 0; }));
  UniqueFd third = Dial(endpoint_ports_[0]);
  SendAll(third.get(), Get("/three"));
  carry.clear();
  EXPECT_EQ(ReadResponse(third.get(), carry).result_int(), 200u);
  EXPECT_EQ(upstream.seen().size(), 2u);
}

// A response header that echoes the credential is dropped; the others arrive.
TEST_F(EndpointTest, AResponseHeaderEchoingTheCredentialIsDropped) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/echo"));
  std::string carry;
  auto response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_EQ(response.find("X-Echo"), response.end()) << response;
  EXPECT_EQ(response["X-Target"], "/v1/echo");  // control: the other header from the same answer
  ASSERT_EQ(upstream.seen().size(), 1u);
  EXPECT_EQ(upstream.seen()[0].Values("x-api-key"), std::vector<std::string>{kRealKey});
}

// With a prefix ("Bearer KEY"), a response header that echoes the bare key, in any case, is
// dropped too (review rev18, finding 4). Control: a header without it arrives.
TEST_F(EndpointTest, AResponseHeaderEchoingTheBareKeyInAnyCaseIsDropped) {
  header_ = "authorization";
  value_ = std::string("Bearer ") + kRealKey;
  TlsUpstream upstream(cert_, [](const Request& request, Stream& stream) {
    http::response<http::string_body> response(http::status::ok, request.version());
    std::string auth(request["authorization"]);
    const std::string key = auth.substr(auth.rfind(' ') + 1);
    std::string lower = key;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    response.set("X-Raw", "key=" + key);
    response.set("X-Lower", lower);
    response.set("X-Other", "fine");
    response.keep_alive(request.keep_alive());
    response.prepare_payload();
    http::write(stream, response);
  });
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), "GET /e HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dummy\r\n\r\n");
  std::string carry;
  auto response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 200u);
  EXPECT_EQ(response.find("X-Raw"), response.end()) << response;
  EXPECT_EQ(response.find("X-Lower"), response.end()) << response;
  EXPECT_EQ(response["X-Other"], "fine");
  ASSERT_EQ(upstream.seen().size(), 1u);
  EXPECT_EQ(upstream.seen()[0].Values("authorization"),
            std::vector<std::string>{std::string("Bearer ") + kRealKey});
}

// The upstream's reason phrase is replaced by the status's standard one: an upstream that puts
// the key there ("401 bad key KEY") does not hand it to the session (review rev19, finding 1).
// Control: the status and the body arrive as sent.
TEST_F(EndpointTest, TheUpstreamsReasonPhraseIsNotPassedOn) {
  TlsUpstream upstream(cert_, [](const Request& request, Stream& stream) {
    http::response<http::string_body> response(http::status::unauthorized, request.version());
    response.reason("bad key " + std::string(request["x-api-key"]));
    response.body() = "denied\n";
    response.keep_alive(request.keep_alive());
    response.prepare_payload();
    http::write(stream, response);
  });
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), Get("/e"));
  std::string carry;
  auto response = ReadResponse(client.get(), carry);
  EXPECT_EQ(response.result_int(), 401u);
  EXPECT_EQ(response.reason(), "Unauthorized");
  EXPECT_EQ(response.body(), "denied\n");
  ASSERT_EQ(upstream.seen().size(), 1u);
  EXPECT_EQ(upstream.seen()[0].Values("x-api-key"), std::vector<std::string>{kRealKey});
}

// TRACE is not forwarded: an upstream that honours it echoes the credential (review rev18,
// finding 5). Control: a GET on the same endpoint is.
TEST_F(EndpointTest, TraceIsRefused) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), "TRACE /t HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string carry;
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 405u);
  EXPECT_TRUE(upstream.seen().empty());
  UniqueFd again = Dial(endpoint_ports_[0]);
  SendAll(again.get(), Get("/g"));
  std::string carry2;
  EXPECT_EQ(ReadResponse(again.get(), carry2).result_int(), 200u);
}

// The upstream gets the framing the gateway read, written anew: one Content-Length of one
// value, or "Transfer-Encoding: chunked" alone; a second Transfer-Encoding is refused (review
// rev18, finding 6).
TEST_F(EndpointTest, FramingIsWrittenAnew) {
  TlsUpstream upstream(cert_);
  StartEndpoint(upstream.port());
  UniqueFd client = Dial(endpoint_ports_[0]);
  SendAll(client.get(), "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello");
  std::string carry;
  EXPECT_EQ(ReadResponse(client.get(), carry).result_int(), 200u);
  ASSERT_EQ(upstream.seen().size(), 1u);
  EXPECT_EQ(upstream.seen()[0].Values("content-length"), std::vector<std::string>{"5"});
  EXPECT_EQ(upstream.seen()[0].body, "hello");

  UniqueFd two = Dial(endpoint_ports_[0]);
  SendAll(two.get(),
          "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
          "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  std::string carry2;
  EXPECT_EQ(ReadResponse(two.get(), carry2).result_int(), 400u);
  EXPECT_EQ(upstream.seen().size(), 1u) << "the refused request reached the upstream";
}

}  // namespace
}  // namespace mp::egress::testing
