// The in-process API (http/server.h) against the fake supervisor, reached over real TCP
// connections from chosen loopback source addresses (all of 127/8 is loopback on Linux, so a
// client can bind 127.0.0.2 as its source). Shared by http_front_door_test.cc and
// http_admission_test.cc. The clients are plain blocking sockets with send and receive
// timeouts (20 s). Test code; one test thread plus the server's.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "fake_supervisor.h"
#include "http/server.h"
#include "temp_dir.h"

namespace mp::http::testing_front_door {

using testing::FakeSupervisor;

constexpr std::string_view kToken = "mp-test-token-0123456789abcdefghijklmnopq";  // 40 chars
constexpr std::string_view kWrongToken = "mp-test-token-0123456789abcdefghijklmnopX";

struct Answer {
  std::string error;  // what failed ("" when an answer came)
  int status = 0;
  std::string head;
  std::string body;
};

// A blocking client connection from `source` (an IPv4 loopback address) to 127.0.0.1:port.
class Client {
 public:
  Client(uint16_t port, const std::string& source)
      : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    const timeval timeout{20, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
      error_ = "bind " + source + ": " + std::strerror(errno);
      return;
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      error_ = std::string("connect: ") + std::strerror(errno);
    }
  }

  // A connection to the Unix socket at `path` (listen_unix), from the abstract address `from`
  // when not empty (a test's way to name its client: the server sees it with getpeername).
  struct UnixPath {
    std::string path;
    std::string from;
  };
  explicit Client(const UnixPath& unix_path)
      : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    const timeval timeout{20, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (!unix_path.from.empty()) {
      sockaddr_un from{};
      from.sun_family = AF_UNIX;
      const size_t n = std::min(unix_path.from.size(), sizeof from.sun_path - 1);
      std::memcpy(from.sun_path + 1, unix_path.from.data(), n);  // sun_path[0] = 0: abstract
      const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
      if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&from), len) != 0) {
        error_ = "bind @" + unix_path.from + ": " + std::strerror(errno);
        return;
      }
    }
    sockaddr_un to{};
    to.sun_family = AF_UNIX;
    std::strncpy(to.sun_path, unix_path.path.c_str(), sizeof to.sun_path - 1);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      error_ = "connect " + unix_path.path + ": " + std::strerror(errno);
    }
  }

  [[nodiscard]] const std::string& error() const { return error_; }
  int fd() const { return fd_.get(); }

  bool Send(const std::string& bytes) {
    for (size_t sent = 0; sent < bytes.size();) {
      const ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n < 0) {
        error_ = "send: " + std::string(std::strerror(errno));
        return false;
      }
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one answer (head and Content-Length body).
  Answer Read() {
    Answer a;
    size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(&a)) return a;
    }
    a.head = in_.substr(0, end + 4);
    size_t length = 0;
    if (const size_t at = a.head.find("Content-Length: "); at != std::string::npos) {
      length = std::stoul(a.head.substr(at + 16));
    }
    while (in_.size() < end + 4 + length) {
      if (!Fill(&a)) return a;
    }
    if (!a.head.starts_with("HTTP/1.1 ")) {
      a.error = "not an HTTP answer: " + a.head;
      return a;
    }
    a.status = std::stoi(a.head.substr(9, 3));
    a.body = in_.substr(end + 4, length);
    in_.erase(0, end + 4 + length);
    return a;
  }

  Answer Exchange(const std::string& request) {
    if (!error_.empty() || !Send(request)) return Answer{error_};
    return Read();
  }

  // Whether the server still reads what this client sends: 20 writes of 16 KiB, 50 ms apart,
  // all succeed. Once the server has closed the socket the kernel answers with a reset and a
  // write fails.
  bool KeepsTakingBytes() {
    const std::string chunk(16 * 1024, 'y');
    for (int i = 0; i < 20; ++i) {
      if (::send(fd_.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }

  // True when the connection is open now: nothing to read, no EOF, no reset (no waiting).
  bool OpenNow() {
    char c;
    const ssize_t n = ::recv(fd_.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  // True when the server closed the connection (EOF or reset) within the receive timeout.
  bool Closed() {
    char c;
    const ssize_t n = ::recv(fd_.get(), &c, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  bool Fill(Answer* a) {
    char buf[16384];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n <= 0) {
      a->error = n == 0 ? "EOF after " + std::to_string(in_.size()) + " bytes"
                        : "recv: " + std::string(std::strerror(errno));
      return false;
    }
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }

  UniqueFd fd_;
  std::string error_;
  std::string in_;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

inline std::string Request(const std::string& method, const std::string& target,
                           std::string_view token, const Headers& headers = {},
                           const std::string& body = {}) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!token.empty()) r += "Authorization: Bearer " + std::string(token) + "\r\n";
  for (const auto& [name, value] : headers) r += name + ": " + value + "\r\n";
  if (!body.empty() || method == "POST") {
    r +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return r + "\r\n" + body;
}

class HttpFrontDoorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = fake_.Start();
    ASSERT_TRUE(started) << started.error().ToString();
  }
  void TearDown() override {
    StopServer();
    fake_.Stop();
  }

  ApiConfig Config() const {
    ApiConfig c;
    c.listen = {{"127.0.0.1", 0}};
    c.control_socket = fake_.socket_path();
    return c;
  }

  void StartServer(ApiConfig config) {
    auto tokens = TokenSet::FromTokens({std::string(kToken)});
    ASSERT_TRUE(tokens) << tokens.error().ToString();
    server_ = std::make_unique<Server>(std::move(config), std::move(*tokens));
    if (before_start_) before_start_(server_->context());
    server_->Inherit(std::move(inherit_));
    inherit_ = {};
    if (keep_in_) server_->KeepTcpListenersIn(std::move(*keep_in_));
    keep_in_.reset();
    auto running = server_->Start();
    ASSERT_TRUE(running) << running.error().ToString();
    port_ = server_->endpoints()[0].port();
    thread_ = std::thread([s = server_.get()] { s->Run(); });
    ASSERT_TRUE(fake_.WaitUntil([](const FakeSupervisor& f) { return f.connections() > 0; },
                                std::chrono::seconds(5)))
        << "the API never connected to the fake supervisor";
  }
  void StopServer() {
    if (server_) server_->Stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  // One request on its own connection from `source`; the status (0 when no answer came).
  int Status(const std::string& source, std::string_view token, const Headers& headers = {},
             const std::string& target = "/health") {
    Client c(port_, source);
    const Answer a = c.Exchange(Request("GET", target, token, headers));
    EXPECT_EQ(a.error, "") << source;
    return a.status;
  }

  FakeSupervisor fake_;
  // White-box: changes the context after the config made it, before the server starts (a
  // control that restores an old behaviour no api.conf key can).
  std::function<void(ApiContext&)> before_start_;
  // Sockets handed to the server as systemd's (Server::Inherit) at the next start.
  InheritedSockets inherit_;
  // The notify socket the server keeps its TCP listeners through, at the next start.
  std::optional<sd::Notifier> keep_in_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace mp::http::testing_front_door
