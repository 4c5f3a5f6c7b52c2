// Sizes at the API's edge, in process (http/server.h) against the fake supervisor: a 1 MiB
// task reaches the supervisor intact (the control protocol carries it in parts), a task over
// the limit is a 413 that names it, and a body over body_limit_bytes is a 413 that a client
// sees even when it writes the whole body before reading (the server drains the rest instead
// of resetting the connection). The client is a plain blocking socket, like Python's
// http.client: send everything, then read. Every socket has send and receive timeouts.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/unique_fd.h"
#include "fake_supervisor.h"
#include "http/api_json.h"
#include "http/server.h"

namespace mp::http {
namespace {

using json = nlohmann::json;
using testing::FakeSupervisor;

constexpr std::string_view kToken = "mp-test-token-0123456789abcdefghijklmnopq";  // 40 chars

struct RawAnswer {
  std::string error;  // the first failing call and its errno; "" when the exchange worked
  int status = 0;
  std::string body;
};

// Connects, sends `head` and `body` completely (blocking, as a client that reads only after
// writing), then reads until EOF.
RawAnswer Exchange(uint16_t port, const std::string& head, const std::string& body) {
  RawAnswer a;
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  // A small send buffer: the body cannot all sit in kernel buffers before the server decides,
  // so without the server's drain the send or the read meets the reset.
  const int sndbuf = 8192;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  const timeval timeout{20, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    a.error = std::string("connect: ") + std::strerror(errno);
    return a;
  }
  const std::string all = head + body;
  for (size_t sent = 0; sent < all.size();) {
    const ssize_t n = ::send(fd.get(), all.data() + sent, all.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      a.error = "send after " + std::to_string(sent) + " bytes: " + std::strerror(errno);
      return a;
    }
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) {
      a.error = "recv after " + std::to_string(in.size()) + " bytes: " + std::strerror(errno);
      return a;
    }
    if (n == 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  const size_t end = in.find("\r\n\r\n");
  if (!in.starts_with("HTTP/1.1 ") || end == std::string::npos) {
    a.error = "not an HTTP answer: " + in.substr(0, 200);
    return a;
  }
  a.status = std::stoi(in.substr(9, 3));
  a.body = in.substr(end + 4);
  return a;
}

std::string PostHead(size_t content_length) {
  return "POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
         std::string(kToken) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(content_length) +
         "\r\nConnection: close\r\n\r\n";
}

class HttpSizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = fake_.Start();
    ASSERT_TRUE(started) << started.error().ToString();
    ApiConfig c;
    c.listen = {{"127.0.0.1", 0}};
    c.control_socket = fake_.socket_path();
    auto tokens = TokenSet::FromTokens({std::string(kToken)});
    ASSERT_TRUE(tokens) << tokens.error().ToString();
    server_ = std::make_unique<Server>(std::move(c), std::move(*tokens));
    auto running = server_->Start();
    ASSERT_TRUE(running) << running.error().ToString();
    port_ = server_->endpoints()[0].port();
    thread_ = std::thread([s = server_.get()] { s->Run(); });
    ASSERT_TRUE(fake_.WaitUntil([](const FakeSupervisor& f) { return f.connections() > 0; },
                                std::chrono::seconds(5)))
        << "the API never connected to the fake supervisor";
  }
  void TearDown() override {
    if (server_) server_->Stop();
    if (thread_.joinable()) thread_.join();
    fake_.Stop();
  }

  RawAnswer Post(const std::string& body) { return Exchange(port_, PostHead(body.size()), body); }

  FakeSupervisor fake_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

// A task of exactly the limit, with bytes JSON escapes (newlines, quotes, backslashes) and
// multi-byte UTF-8, so that both the body and the control message are far over one record.
std::string LongTask(size_t bytes) {
  const std::string line = "echo \"a\\b\" \xc3\xa9t\xc3\xa9 # filler filler filler\n";
  std::string task;
  while (task.size() + line.size() <= bytes) task += line;
  task.append(bytes - task.size(), 'x');
  return task;
}

TEST_F(HttpSizeTest, OneMebibyteTaskReachesTheSupervisorIntact) {
  const std::string task = LongTask(wire::kMaxTaskBytes);
  ASSERT_EQ(task.size(), 1024u * 1024);
  const RawAnswer a = Post(json{{"task", task}}.dump());
  ASSERT_EQ(a.error, "");
  EXPECT_EQ(a.status, 201) << a.body;
  const std::string got = fake_.last_spawn_task();
  EXPECT_EQ(got.size(), task.size());
  EXPECT_TRUE(got == task) << "the task changed on the way";
}

TEST_F(HttpSizeTest, TaskOverTheLimitIs413NamingIt) {
  const RawAnswer a = Post(json{{"task", std::string(wire::kMaxTaskBytes + 1, 'x')}}.dump());
  ASSERT_EQ(a.error, "");
  EXPECT_EQ(a.status, 413) << a.body;
  const json j = json::parse(a.body, nullptr, false);
  EXPECT_EQ(j.value("code", ""), "too_large") << a.body;
  EXPECT_EQ(j.value("field", ""), "/task") << a.body;
  EXPECT_NE(j.value("error", "").find("1048576"), std::string::npos) << a.body;
  EXPECT_EQ(fake_.requests(wire::RequestType::kSpawn), 0u);
}

// The body is refused from its Content-Length; the client is still sending. Without the drain
// the server's close with unread bytes is a reset: send fails (EPIPE/ECONNRESET) or the
// answer is lost.
TEST_F(HttpSizeTest, BodyOverTheLimitIs413ForAClientThatWritesEverythingFirst) {
  const std::string body = json{{"task", std::string(2 * 1024 * 1024, 'x')}}.dump();
  for (int i = 0; i < 3; ++i) {  // more than once: a lucky timing must not pass the test
    const RawAnswer a = Post(body);
    ASSERT_EQ(a.error, "") << "attempt " << i;
    EXPECT_EQ(a.status, 413) << a.body;
    const json j = json::parse(a.body, nullptr, false);
    EXPECT_EQ(j.value("code", ""), "too_large") << a.body;
    EXPECT_NE(j.value("error", "").find("body_limit_bytes"), std::string::npos) << a.body;
  }
  EXPECT_EQ(fake_.requests(wire::RequestType::kSpawn), 0u);
}

// Chunked: no Content-Length, so the limit is hit while the body is read.
TEST_F(HttpSizeTest, ChunkedBodyOverTheLimitIs413ForAClientThatWritesEverythingFirst) {
  const std::string head = "POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                           std::string(kToken) +
                           "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                           "Connection: close\r\n\r\n";
  std::string body;
  const std::string chunk(64 * 1024, 'x');
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
  for (int i = 0; i < 32; ++i) body += size_line + chunk + "\r\n";  // 2 MiB
  body += "0\r\n\r\n";
  const RawAnswer a = Exchange(port_, head, body);
  ASSERT_EQ(a.error, "");
  EXPECT_EQ(a.status, 413) << a.body;
  EXPECT_EQ(fake_.requests(wire::RequestType::kSpawn), 0u);
}

}  // namespace
}  // namespace mp::http
