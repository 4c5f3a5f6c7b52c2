// The API's TCP listeners outlive a restart (http/server.h KeepTcpListenersIn, listen_fds.h):
// in-process, against the fake supervisor and a fake notify socket that receives what PID 1
// would. A server bound to a port hands the listening socket to the store; after it stops the
// port is still taken, so no other process can bind it (control: without the store the same
// bind succeeds, the squat the store prevents); the next server takes the socket back for the
// address api.conf names, serves on it and stores nothing new; a kept socket that api.conf no
// longer names is removed from the store, before a new address on its port is bound; a socket
// unit's socket that no address names is a start error. Runs as any user.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/sd_daemon.h"
#include "front_door_fixture.h"
#include "http/listen_fds.h"

namespace mp::http {
namespace {

using namespace testing_front_door;  // NOLINT(google-build-using-namespace): test fixture

// A datagram socket where PID 1's notify socket would be; what each message carried.
class FakeManager {
 public:
  explicit FakeManager(const std::string& path) : path_(path) {
    sock_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::bind(sock_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  }
  sd::Notifier Notifier() const {
    auto n = sd::Notifier::Connect(path_);
    EXPECT_TRUE(n) << n.error().ToString();
    return std::move(*n);
  }
  struct Message {
    std::string text;
    std::vector<UniqueFd> fds;
  };
  // Every message waiting now.
  std::vector<Message> Drain() {
    std::vector<Message> out;
    for (;;) {
      char buf[4096];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
      iovec iov{buf, sizeof buf};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_CMSG_CLOEXEC);
      if (n < 0) break;
      Message m{std::string(buf, static_cast<size_t>(n)), {}};
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          m.fds.emplace_back(fd);
        }
      }
      out.push_back(std::move(m));
    }
    return out;
  }

 private:
  std::string path_;
  UniqueFd sock_;
};

// errno of binding a fresh TCP socket to 127.0.0.1:`port` (0: bound), as another local
// process would try while the API is not running.
int BindErrno(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
}

class HttpKeptListenerTest : public HttpFrontDoorTest {
 protected:
  test::TempDir dir_{"mp-kept-listener"};
  FakeManager manager_{dir_.path() + "/notify"};
};

TEST_F(HttpKeptListenerTest, TheStoreHoldsThePortThroughARestartAndTheNextServerServesIt) {
  keep_in_ = manager_.Notifier();
  StartServer(Config());  // 127.0.0.1:0
  const uint16_t port = port_;
  auto stored = manager_.Drain();
  ASSERT_EQ(stored.size(), 1u);
  const std::string name = "api-tcp-127.0.0.1-" + std::to_string(port);
  EXPECT_EQ(stored[0].text, "FDSTORE=1\nFDNAME=" + name + "\nFDPOLL=0");
  ASSERT_EQ(stored[0].fds.size(), 1u);
  StopServer();

  // The API is gone; the store's copy keeps the port. Another process cannot take it.
  EXPECT_EQ(BindErrno(port), EADDRINUSE);

  // The next start gets the stored socket back (as LISTEN_FDS would pass it) and serves the
  // address api.conf names with it; nothing new is stored.
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(stored[0].fds[0].get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  ASSERT_EQ(ntohs(a.sin_port), port);
  inherit_.tcp_sockets.push_back(
      {std::move(stored[0].fds[0]), name,
       boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port)});
  keep_in_ = manager_.Notifier();
  ApiConfig config = Config();
  config.listen = {{"127.0.0.1", port}};
  StartServer(config);
  EXPECT_EQ(port_, port);
  EXPECT_EQ(Status("127.0.0.1", kToken), 200);
  EXPECT_TRUE(manager_.Drain().empty()) << "a passed socket was stored again";
}

TEST_F(HttpKeptListenerTest, ControlWithoutTheStoreThePortIsFreeBetweenRuns) {
  StartServer(Config());
  const uint16_t port = port_;
  StopServer();
  EXPECT_EQ(BindErrno(port), 0) << "the port stayed taken without the store";
  EXPECT_TRUE(manager_.Drain().empty());
}

TEST_F(HttpKeptListenerTest, AKeptSocketApiConfNoLongerNamesLeavesTheStore) {
  keep_in_ = manager_.Notifier();
  StartServer(Config());
  const uint16_t old_port = port_;
  auto stored = manager_.Drain();
  ASSERT_EQ(stored.size(), 1u);
  ASSERT_EQ(stored[0].fds.size(), 1u);
  StopServer();
  const std::string name = "api-tcp-127.0.0.1-" + std::to_string(old_port);
  inherit_.tcp_sockets.push_back(
      {std::move(stored[0].fds[0]), name,
       boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), old_port)});
  keep_in_ = manager_.Notifier();
  StartServer(Config());  // listen changed: another (free) port
  EXPECT_NE(port_, old_port);
  EXPECT_EQ(Status("127.0.0.1", kToken), 200);
  const auto messages = manager_.Drain();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].text, "FDSTOREREMOVE=1\nFDNAME=" + name);
  EXPECT_EQ(messages[1].text,
            "FDSTORE=1\nFDNAME=api-tcp-127.0.0.1-" + std::to_string(port_) + "\nFDPOLL=0");
  // The server's copy of the old socket is closed; the test's store copy went with the drain.
  EXPECT_EQ(BindErrno(old_port), 0);
}

// listen = 0.0.0.0:P becomes 127.0.0.1:P: the kept socket holds P, so it is let go first, and
// the bind waits until systemd has closed its copy too (here: the test, when the remove arrives).
// (This direction, not the other: while only 127.0.0.1:P is bound, a parallel test's socket on
// another loopback address may take port P and keep a bind of 0.0.0.0:P from succeeding. The
// host-install test moves 127.0.0.1:3200 to 0.0.0.0:3200 on the installed package.)
TEST_F(HttpKeptListenerTest, ANewAddressOnAKeptSocketsPortIsBoundOnceTheKeptOneIsLetGo) {
  keep_in_ = manager_.Notifier();
  ApiConfig wildcard = Config();
  wildcard.listen = {{"0.0.0.0", 0}};
  StartServer(wildcard);
  const uint16_t port = port_;
  auto stored = manager_.Drain();
  ASSERT_EQ(stored.size(), 1u);
  ASSERT_EQ(stored[0].fds.size(), 1u);
  StopServer();
  UniqueFd managers_copy = std::move(stored[0].fds[0]);
  const std::string name = "api-tcp-0.0.0.0-" + std::to_string(port);
  inherit_.tcp_sockets.push_back(
      {UniqueFd(::fcntl(managers_copy.get(), F_DUPFD_CLOEXEC, 3)), name,
       boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("0.0.0.0"), port)});
  // As PID 1 does: the store's copy goes when FDSTOREREMOVE is read (a little later).
  std::vector<std::string> seen;
  std::thread manager([&] {
    for (int i = 0; i < 500 && managers_copy; ++i) {
      for (auto& m : manager_.Drain()) {
        seen.push_back(m.text);
        if (m.text == "FDSTOREREMOVE=1\nFDNAME=" + name) {
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          managers_copy.Reset();
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  keep_in_ = manager_.Notifier();
  ApiConfig config = Config();
  config.listen = {{"127.0.0.1", port}};
  StartServer(config);
  manager.join();
  EXPECT_EQ(port_, port);
  EXPECT_EQ(Status("127.0.0.1", kToken), 200);
  for (auto& m : manager_.Drain()) seen.push_back(m.text);
  EXPECT_NE(std::find(seen.begin(), seen.end(),
                      "FDSTORE=1\nFDNAME=api-tcp-127.0.0.1-" + std::to_string(port) + "\nFDPOLL=0"),
            seen.end());
}

TEST_F(HttpKeptListenerTest, ASocketUnitsSocketNoAddressNamesIsAStartError) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd.get(), 8), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  const uint16_t port = ntohs(a.sin_port);
  auto tokens = TokenSet::FromTokens({std::string(kToken)});
  ASSERT_TRUE(tokens);
  Server server(Config(), std::move(*tokens));
  InheritedSockets passed;
  passed.tcp_sockets.push_back(
      {std::move(fd), "monkeyproof-api.socket",
       boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port)});
  server.Inherit(std::move(passed));
  const auto started = server.Start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().ToString().find("systemd passed a TCP socket bound to 127.0.0.1 port " +
                                            std::to_string(port) +
                                            " (\"monkeyproof-api.socket\"), and neither listen "
                                            "nor tls_listen in api.conf names that address"),
            std::string::npos)
      << started.error().ToString();
}

}  // namespace
}  // namespace mp::http
