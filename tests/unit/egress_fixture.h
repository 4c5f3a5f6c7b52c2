// Test scaffolding for the egress gateway's engine (src/egress/egress_session.h): an
// EgressSession on an io_context thread with listeners on 127.0.0.1 ephemeral ports, a map
// resolver, loopback upstreams that record what reaches them, and blocking POSIX clients.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "egress/egress_session.h"

namespace mp::egress::testing {

namespace asio = boost::asio;

// A socket bound to `address` (IPv4 or IPv6 text) and `port` (0: an ephemeral one); listening
// if a stream.
inline UniqueFd Listen(int type, const char* address = "127.0.0.1", uint16_t port = 0) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof *v4;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, address, &v6->sin6_addr), 1) << address;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof *v6;
  }
  UniqueFd fd(socket(storage.ss_family, type | SOCK_CLOEXEC, 0));
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), length), 0) << address;
  if (type == SOCK_STREAM) {
    EXPECT_EQ(listen(fd.get(), 64), 0);
  }
  return fd;
}

inline uint16_t PortOf(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return address.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port)
                                       : ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

// A blocking client socket with a 5 s receive timeout (a hang fails the test, never blocks it).
inline UniqueFd Dial(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  timeval timeout{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return fd;
}

inline void SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// How a read of the peer ended.
enum class End { kEof, kReset, kTimeout, kEnough };
struct Received {
  std::string bytes;
  End end = End::kEof;
};

// Reads until EOF, reset, the 5 s timeout, or `enough` bytes.
inline Received ReadAll(int fd, size_t enough = SIZE_MAX) {
  Received r;
  char buf[4096];
  while (r.bytes.size() < enough) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      r.bytes.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return r;
    r.end = (errno == EAGAIN || errno == EWOULDBLOCK) ? End::kTimeout : End::kReset;
    return r;
  }
  r.end = End::kEnough;
  return r;
}

// Reads one HTTP response head (up to the blank line).
inline std::string ReadHead(int fd) {
  std::string head;
  char c;
  while (head.find("\r\n\r\n") == std::string::npos && recv(fd, &c, 1, 0) == 1) head += c;
  return head;
}

// A loopback server: kEcho sends back what it reads; kHttp answers "ok" to the first request
// head and keeps reading until EOF. Records every byte that reached it.
class Upstream {
 public:
  enum class Mode { kEcho, kHttp, kRecord };
  explicit Upstream(Mode mode) : Upstream(mode, Listen(SOCK_STREAM)) {}
  // On a listener of the test's choosing (another loopback address, IPv6).
  Upstream(Mode mode, UniqueFd listener) : mode_(mode), listener_(std::move(listener)) {
    port_ = PortOf(listener_.get());
    thread_ = std::thread([this] { Serve(); });
  }
  ~Upstream() {
    stop_ = true;
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::string received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  int connections() const { return connections_; }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      UniqueFd conn(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) continue;
      ++connections_;
      timeval timeout{2, 0};
      setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      std::string seen;
      bool answered = false;
      char buf[4096];
      for (;;) {
        ssize_t n = recv(conn.get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        {
          std::lock_guard lock(mu_);
          received_.append(buf, static_cast<size_t>(n));
        }
        seen.append(buf, static_cast<size_t>(n));
        if (mode_ == Mode::kEcho) SendAll(conn.get(), std::string_view(buf, n));
        if (mode_ == Mode::kHttp && !answered && seen.find("\r\n\r\n") != std::string::npos) {
          answered = true;
          SendAll(conn.get(),
                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
          shutdown(conn.get(), SHUT_WR);
        }
      }
    }
  }

  Mode mode_;
  UniqueFd listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;
  std::string received_;
  std::thread thread_;
};

class MapResolver : public Resolver {
 public:
  explicit MapResolver(asio::io_context& io) : io_(io) {}
  std::map<std::string, std::vector<std::string>> names;
  // Every name the gateway asked for, in order.
  std::vector<std::string> asked() {
    std::lock_guard lock(mu_);
    return asked_;
  }
  void Resolve(const std::string& name, Handler handler) override {
    {
      std::lock_guard lock(mu_);
      asked_.push_back(name);
    }
    auto it = names.find(name);
    Result<std::vector<asio::ip::address>> result = PlainError("no such name: " + name);
    if (it != names.end()) {
      std::vector<asio::ip::address> addresses;
      for (const std::string& a : it->second) addresses.push_back(asio::ip::make_address(a));
      result = std::move(addresses);
    }
    asio::post(io_, [handler = std::move(handler), result = std::move(result)]() mutable {
      handler(std::move(result));
    });
  }

 private:
  asio::io_context& io_;
  std::mutex mu_;
  std::vector<std::string> asked_;
};

// The first flight of a real TLS client (OpenSSL) for `sni` ("" = no server_name extension).
inline std::string ClientHello(const std::string& sni) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // ssl owns both
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  SSL_set_connect_state(ssl.get());
  EXPECT_EQ(SSL_do_handshake(ssl.get()), -1);  // wants the server's answer
  std::string hello;
  char buf[4096];
  int n;
  while ((n = BIO_read(out, buf, sizeof buf)) > 0) hello.append(buf, static_cast<size_t>(n));
  return hello;
}

// The session under test on its own io_context thread.
class GatewayFixture : public ::testing::Test {
 protected:
  GatewayFixture() : resolver_(std::make_shared<MapResolver>(io_)) {}
  ~GatewayFixture() override { StopSession(); }

  // Starts a session allowing `allow`; `private_ok` are loopback upstream ports a name may
  // resolve to (GatewayConfig::test_private_upstreams).
  void StartSession(const std::vector<std::string>& allow,
                    const std::vector<uint16_t>& private_ok = {},
                    std::function<void(GatewayConfig&)> tweak = nullptr) {
    StopSession();
    GatewayConfig config;
    config.session_id = "s-test";
    auto list = AllowList::Parse(allow);
    ASSERT_TRUE(list) << list.error().what;
    config.allow = std::move(*list);
    for (uint16_t port : private_ok) {
      config.test_private_upstreams.insert({asio::ip::make_address("127.0.0.1"), port});
    }
    GatewayListeners listeners{
        Listen(SOCK_STREAM), Listen(SOCK_STREAM), Listen(SOCK_STREAM), Listen(SOCK_DGRAM), {}};
    proxy_port_ = PortOf(listeners.proxy.get());
    tls_port_ = PortOf(listeners.tls.get());
    http_port_ = PortOf(listeners.http.get());
    dns_port_ = PortOf(listeners.dns.get());
    if (tweak) tweak(config);  // the listener ports are known here
    // One listener per model endpoint the tweak configured.
    endpoint_ports_.clear();
    for (size_t i = 0; i < config.endpoints.size(); ++i) {
      listeners.endpoints.push_back(Listen(SOCK_STREAM));
      endpoint_ports_.push_back(PortOf(listeners.endpoints.back().get()));
    }
    auto session = EgressSession::Create(io_, std::move(config), std::move(listeners), resolver_,
                                         [this](const Verdict& v) {
                                           std::lock_guard lock(mu_);
                                           verdicts_.push_back(v);
                                         });
    ASSERT_TRUE(session) << session.error().what;
    session_ = *session;
    io_.restart();
    work_.emplace(io_.get_executor());
    asio::post(io_, [s = session_] { s->Start(); });
    thread_ = std::thread([this] { io_.run(); });
  }

  void StopSession() {
    if (!session_) return;
    asio::post(io_, [s = session_] { s->Stop(); });
    asio::post(io_, [this] { io_.stop(); });  // what Stop left queued runs on the next run()
    work_.reset();
    thread_.join();
    session_.reset();
  }

  // Waits (up to 5 s) until `predicate` holds; false if it never does.
  static bool WaitFor(const std::function<bool()>& predicate) {
    for (int i = 0; i < 500; ++i) {
      if (predicate()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return predicate();
  }

  std::vector<Verdict> verdicts() {
    std::lock_guard lock(mu_);
    return verdicts_;
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::shared_ptr<MapResolver> resolver_;
  std::shared_ptr<EgressSession> session_;
  uint16_t proxy_port_ = 0, tls_port_ = 0, http_port_ = 0, dns_port_ = 0;
  std::vector<uint16_t> endpoint_ports_;  // one per GatewayConfig::endpoints entry
  std::mutex mu_;
  std::vector<Verdict> verdicts_;
};

}  // namespace mp::egress::testing
