// The API's Unix-socket listener (`listen_unix`, http/unix_listener.h) in-process, against the
// fake supervisor: it serves the README's calls with the same token auth as TCP (no token:
// 401), names its client by uid, takes its mode, refuses to take over a live socket, and is out
// of reach of a network flood: at max_connections a Unix connection evicts an idle network one,
// and network connections never evict a Unix one (control: a network connection in the same
// place is evicted). The CLI reaches it with --url unix:PATH. No root, no cgroups.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "front_door_fixture.h"

namespace mp::http {
namespace {

using namespace testing_front_door;  // NOLINT(google-build-using-namespace): test fixture
using json = nlohmann::json;

class HttpUnixSocketTest : public HttpFrontDoorTest {
 protected:
  ApiConfig UnixConfig() const {
    ApiConfig c = Config();
    c.unix_socket.path = socket_path_;
    return c;
  }
  Answer UnixExchange(const std::string& request) {
    Client c(Client::UnixPath{socket_path_});
    return c.Exchange(request);
  }

  test::TempDir dir_{"mp-unix-api"};
  std::string socket_path_ = dir_.path() + "/api.sock";
};

// The README's calls over the socket: create a session, read it, list, kill; each needs the
// token as over TCP (no token and a wrong one: 401), and the supervisor is told the client is
// the peer's uid.
TEST_F(HttpUnixSocketTest, ServesTheReadmeCallsWithTheSameAuth) {
  StartServer(UnixConfig());
  struct stat st {};
  ASSERT_EQ(::stat(socket_path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);

  Answer a = UnixExchange(Request("POST", "/sessions", kToken, {}, R"({"task":"idle"})"));
  ASSERT_EQ(a.error, "");
  ASSERT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(fake_.last_spawn_client(), "api:unix:uid=" + std::to_string(::geteuid()));
  const std::string id = json::parse(a.body).at("id").get<std::string>();
  a = UnixExchange(Request("GET", "/sessions/" + id, kToken));
  EXPECT_EQ(a.status, 200) << a.body;
  a = UnixExchange(Request("GET", "/sessions", kToken));
  EXPECT_EQ(a.status, 200) << a.body;
  EXPECT_NE(a.body.find(id), std::string::npos) << a.body;
  a = UnixExchange(Request("DELETE", "/sessions/" + id, kToken));
  EXPECT_LT(a.status, 300) << a.body;

  // The same auth as TCP: nothing is served without a valid token.
  for (const std::string_view token : {std::string_view(), kWrongToken}) {
    a = UnixExchange(Request("GET", "/sessions", token));
    EXPECT_EQ(a.error, "");
    EXPECT_EQ(a.status, 401) << a.body;
    a = UnixExchange(Request("POST", "/sessions", token, {}, R"({"task":"idle"})"));
    EXPECT_EQ(a.status, 401) << a.body;
  }
  // Control: the TCP listener answers the same.
  EXPECT_EQ(Status("127.0.0.1", {}, {}, "/sessions"), 401);
  EXPECT_EQ(Status("127.0.0.1", kToken, {}, "/sessions"), 200);
}

// A flood of idle network connections holds max_connections: a Unix connection still gets in
// (the oldest network one is evicted for it), and once in it is never the one evicted for the
// network connections that follow. Control: a network connection opened at the same moment and
// idle as long is evicted.
TEST_F(HttpUnixSocketTest, ANetworkFloodCannotCrowdOutTheSocket) {
  ApiConfig config = UnixConfig();
  config.max_connections = 8;
  config.max_preauth_connections_per_address = 0;
  config.accept_rate_per_address = 0;
  config.header_timeout_ms = 30'000;
  StartServer(config);
  std::vector<std::unique_ptr<Client>> flood;
  for (int i = 0; i < 8; ++i) flood.push_back(std::make_unique<Client>(port_, "127.0.0.9"));
  Client local(Client::UnixPath{socket_path_});
  ASSERT_EQ(local.error(), "");
  Client network(port_, "127.0.0.1");  // the control, idle from the same moment
  ASSERT_EQ(network.error(), "");
  for (int i = 0; i < 24; ++i) flood.push_back(std::make_unique<Client>(port_, "127.0.0.9"));
  // 24 more network connections at a full cap evicted 24 idle ones, the control among them.
  EXPECT_TRUE(network.Closed()) << "the control was not evicted: the flood proves nothing";
  const Answer a = local.Exchange(Request("GET", "/health", kToken));
  EXPECT_EQ(a.error, "") << "the Unix connection was evicted by the network flood";
  EXPECT_EQ(a.status, 200) << a.body;
}

TEST_F(HttpUnixSocketTest, ModeAndALiveSocketAreRespected) {
  ApiConfig config = UnixConfig();
  config.unix_socket.mode = 0600;
  StartServer(config);
  struct stat st {};
  ASSERT_EQ(::stat(socket_path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // A second server on the same path refuses to take over the live socket.
  auto tokens = TokenSet::FromTokens({std::string(kToken)});
  ASSERT_TRUE(tokens);
  ApiConfig second = config;
  second.listen = {{"127.0.0.1", 0}};
  Server other(second, std::move(*tokens));
  const auto started = other.Start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().what.find("another process listens on it"), std::string::npos)
      << started.error().ToString();
  EXPECT_EQ(UnixExchange(Request("GET", "/health", kToken)).status, 200);
  // A stale socket file (its listener gone) is replaced; a path that is no socket is refused.
  StopServer();
  ASSERT_EQ(::access(socket_path_.c_str(), F_OK), -1) << "the socket file outlived the server";
  const std::string plain = dir_.Write("not-a-socket", "x");
  ApiConfig bad = config;
  bad.unix_socket.path = plain;
  auto tokens2 = TokenSet::FromTokens({std::string(kToken)});
  Server refused(bad, std::move(*tokens2));
  const auto no = refused.Start();
  ASSERT_FALSE(no);
  EXPECT_NE(no.error().what.find("is not a socket"), std::string::npos) << no.error().ToString();
}

// Runs the monkeyproof CLI with `args` and `token` (none when empty); its exit status and what
// it printed.
std::pair<int, std::string> RunCli(const std::string& args, std::string_view token) {
  const std::string command = "env -i PATH=/usr/bin:/bin HOME=/nonexistent" +
                              (token.empty() ? "" : " MONKEYPROOF_TOKEN=" + std::string(token)) +
                              " " + MP_CLI_PATH + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string out;
  std::array<char, 4096> buf{};
  while (const size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// The CLI over the socket: list and run a session whose output streams over the WebSocket.
// Without a token it is refused (401) as over TCP.
TEST_F(HttpUnixSocketTest, TheCliSpeaksOverTheSocket) {
  StartServer(UnixConfig());
  const std::string url = "--url unix:" + socket_path_;
  auto [status, out] = RunCli(url + " ls --json", kToken);
  EXPECT_EQ(status, 0) << out;
  EXPECT_TRUE(json::parse(out, nullptr, false).is_array()) << out;
  std::tie(status, out) = RunCli(url + " run -- emit:3000", kToken);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find(testing::FakeSupervisor::Pattern(0, 3000)), std::string::npos) << out;
  std::tie(status, out) = RunCli(url + " ls", "");
  EXPECT_NE(status, 0) << out;
  std::tie(status, out) = RunCli(url + " ls", kWrongToken);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("nauthorized"), std::string::npos) << out;
  // Control: the same CLI over TCP.
  std::tie(status, out) =
      RunCli("--url http://127.0.0.1:" + std::to_string(port_) + " ls --json", kToken);
  EXPECT_EQ(status, 0) << out;
}

}  // namespace
}  // namespace mp::http
