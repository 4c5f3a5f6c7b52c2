// The API's Unix-socket listener (`listen_unix`, http/unix_listener.h) in-process, against the
// fake supervisor: it serves the README's calls with the same token auth as TCP (no token:
// 401), names its client by uid, takes its mode, refuses to take over a live socket, and is out
// of reach of a network flood: at max_connections a Unix connection evicts an idle network one,
// and network connections never evict a Unix one (control: a network connection in the same
// place is evicted). One local uid holding idle connections cannot lock anyone out: it holds at
// most max_unix_connections_per_uid of them, and root is exempt (control: without the cap the
// same hold fills max_connections and every other client is refused). Idle connections meet the
// same first-request deadline as TCP. A socket systemd passed (socket activation) is served the
// same way, wins over listen_unix, and outlives the server. The chown to listen_unix_group says
// what to do when it is not permitted. The CLI reaches it with --url unix:PATH. No root, no
// cgroups (run as root, the EPERM test drops to nobody in a child).
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "front_door_fixture.h"
#include "http/listen_fds.h"

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

  // A client of the socket with uid `uid`, as UidFromPeerName reads it.
  std::unique_ptr<Client> UnixClientOf(uint32_t uid) {
    static int serial = 0;
    return std::make_unique<Client>(Client::UnixPath{
        socket_path_, "mp-unix-test/" + std::to_string(::getpid()) + "/" +
                          std::to_string(++serial) + "/uid=" + std::to_string(uid)});
  }
  // The peer uid a test's client names in its abstract address ("/uid=1000" at its end); a
  // client without one is unknown. Stands in for SO_PEERCRED, which gives every client of a
  // test the test's own uid.
  static std::optional<uint32_t> UidFromPeerName(int fd) {
    sockaddr_un a{};
    socklen_t len = sizeof a;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return std::nullopt;
    const size_t base = offsetof(sockaddr_un, sun_path);
    if (len <= base + 1 || a.sun_path[0] != '\0') return std::nullopt;
    const std::string name(a.sun_path + 1, len - base - 1);
    const size_t at = name.rfind("/uid=");
    if (at == std::string::npos) return std::nullopt;
    return static_cast<uint32_t>(std::stoul(name.substr(at + 5)));
  }

  test::TempDir dir_{"mp-unix-api"};
  std::string socket_path_ = dir_.path() + "/api.sock";
};

// A listening Unix stream socket at `path` with `mode`, as systemd makes one for a socket unit.
UniqueFd SystemdStyleSocket(const std::string& path, mode_t mode) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << path;
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  EXPECT_EQ(::listen(fd.get(), SOMAXCONN), 0);
  return fd;
}

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

// Socket activation (monkeyproof-api.socket): a listening socket systemd made and passed is
// served like listen_unix, the same routes and auth, the client named by its uid; it wins over a
// listen_unix in the config (which is then not bound), and its file is systemd's: the server's
// end leaves it in place. Control: the same config without an inherited socket binds
// listen_unix.
TEST_F(HttpUnixSocketTest, ServesTheSocketSystemdPassedInsteadOfListenUnix) {
  const std::string passed = dir_.path() + "/passed.sock";
  UniqueFd fd = SystemdStyleSocket(passed, 0660);
  const auto family = CheckListeningSocket(fd.get());
  ASSERT_TRUE(family) << family.error().ToString();
  ASSERT_EQ(*family, AF_UNIX);
  inherit_.unix_sockets.push_back({std::move(fd), "monkeyproof-api.socket", passed});
  StartServer(UnixConfig());
  EXPECT_EQ(::access(socket_path_.c_str(), F_OK), -1) << "listen_unix was bound as well";
  ASSERT_EQ(server_->unix_sockets().size(), 1u);
  EXPECT_EQ(server_->unix_sockets()[0].first, passed);
  EXPECT_EQ(server_->unix_sockets()[0].second, "monkeyproof-api.socket");

  auto exchange = [&](const std::string& request) {
    Client c(Client::UnixPath{passed});
    return c.Exchange(request);
  };
  Answer a = exchange(Request("POST", "/sessions", kToken, {}, R"({"task":"idle"})"));
  ASSERT_EQ(a.error, "");
  ASSERT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(fake_.last_spawn_client(), "api:unix:uid=" + std::to_string(::geteuid()));
  const std::string id = json::parse(a.body).at("id").get<std::string>();
  EXPECT_EQ(exchange(Request("GET", "/sessions/" + id, kToken)).status, 200);
  EXPECT_LT(exchange(Request("DELETE", "/sessions/" + id, kToken)).status, 300);
  EXPECT_EQ(exchange(Request("GET", "/sessions", {})).status, 401);
  EXPECT_EQ(exchange(Request("GET", "/sessions", kWrongToken)).status, 401);
  StopServer();
  struct stat st {};
  EXPECT_EQ(::stat(passed.c_str(), &st), 0) << "the server removed systemd's socket file";
  EXPECT_EQ(st.st_mode & 07777, 0660u) << "the server changed systemd's socket file";

  // Control: nothing inherited, the same config binds listen_unix.
  StartServer(UnixConfig());
  EXPECT_EQ(::access(socket_path_.c_str(), F_OK), 0);
  ASSERT_EQ(server_->unix_sockets().size(), 1u);
  EXPECT_EQ(server_->unix_sockets()[0].second, "listen_unix");
  EXPECT_EQ(UnixExchange(Request("GET", "/health", kToken)).status, 200);
}

// One local uid holds idle connections (none sends a request): it keeps at most
// max_unix_connections_per_uid of them (each one more closes its oldest), so another uid, root
// and a network client are all served; a connection of that uid which has authenticated is
// not among those closed. Control: without the cap the same hold fills max_connections, and the
// other uid and the network client are refused (503) while root still gets in (it takes the
// place of the oldest idle Unix connection).
TEST_F(HttpUnixSocketTest, OneUidsIdleConnectionsLockNobodyOut) {
  for (const bool capped : {true, false}) {
    SCOPED_TRACE(capped ? "max_unix_connections_per_uid = 4" : "control: no cap");
    ApiConfig config = UnixConfig();
    config.max_connections = 8;
    config.max_unix_connections_per_uid = capped ? 4 : 0;
    config.header_timeout_ms = 30'000;
    before_start_ = [](ApiContext& ctx) { ctx.unix_peer_uid = UidFromPeerName; };
    StartServer(config);
    // uid 1000 authenticates on one keep-alive connection: from then on it is not idle.
    auto working = UnixClientOf(1000);
    ASSERT_EQ(working->Exchange(Request("GET", "/health", kToken)).status, 200);
    std::vector<std::unique_ptr<Client>> hold;
    for (int i = 0; i < 12; ++i) hold.push_back(UnixClientOf(1000));
    const Answer other = UnixClientOf(1001)->Exchange(Request("GET", "/health", kToken));
    Client network(port_, "127.0.0.1");
    const Answer net = network.Exchange(Request("GET", "/health", kToken));
    if (capped) {
      EXPECT_EQ(other.status, 200) << other.error << other.body;
      EXPECT_EQ(net.status, 200) << net.error << net.body;
      // The first 8 of the 12 made room for the last 4, which stay open.
      for (int i = 0; i < 8; ++i) EXPECT_TRUE(hold[i]->Closed()) << "idle connection " << i;
      for (int i = 8; i < 12; ++i) EXPECT_TRUE(hold[i]->OpenNow()) << "idle connection " << i;
    } else {
      EXPECT_EQ(other.status, 503)
          << "the control did not fill max_connections: " << other.error << other.body;
      EXPECT_EQ(net.status, 503) << net.error << net.body;
      for (int i = 0; i < 7; ++i) EXPECT_TRUE(hold[i]->OpenNow()) << "idle connection " << i;
    }
    EXPECT_EQ(working->Exchange(Request("GET", "/health", kToken)).status, 200)
        << "an authenticated connection was closed for idle ones";
    const Answer root = UnixClientOf(0)->Exchange(Request("GET", "/health", kToken));
    EXPECT_EQ(root.status, 200) << root.error << root.body;
    if (!capped) {
      EXPECT_TRUE(hold[0]->Closed()) << "root got in without making room";
    }
    StopServer();
    before_start_ = nullptr;
  }
}

// A Unix connection that sends nothing is closed after header_timeout_ms, as a TCP one is.
// Control: one that has authenticated idles on (idle_timeout_ms), past the same time.
TEST_F(HttpUnixSocketTest, AnIdleConnectionMeetsTheFirstRequestDeadline) {
  ApiConfig config = UnixConfig();
  config.header_timeout_ms = 300;
  StartServer(config);
  Client authenticated(Client::UnixPath{socket_path_});
  ASSERT_EQ(authenticated.Exchange(Request("GET", "/health", kToken)).status, 200);
  const auto start = std::chrono::steady_clock::now();
  Client idle(Client::UnixPath{socket_path_});
  ASSERT_EQ(idle.error(), "");
  EXPECT_TRUE(idle.Closed());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(authenticated.OpenNow()) << "the control was closed as well";
  EXPECT_EQ(authenticated.Exchange(Request("GET", "/health", kToken)).status, 200);
}

// listen_unix_group names a group the API may not give the socket to (not one of its groups;
// under the package's unit none but its own is mapped): the start fails with EPERM and says to
// use the socket unit. Run as root, a child drops to nobody for it (root may chown to any
// group). Control: a group of the API's own is accepted.
TEST_F(HttpUnixSocketTest, AGroupItMayNotGiveTheSocketToSaysWhatToDo) {
  ::chmod(dir_.path().c_str(), 0777);  // nobody binds in it
  auto start_with_group = [&](const std::string& group) -> Result<void> {
    ApiConfig config = UnixConfig();
    config.unix_socket.group = group;
    auto tokens = TokenSet::FromTokens({std::string(kToken)});
    if (!tokens) return tokens.error();
    Server server(config, std::move(*tokens));
    return server.Start();
  };
  if (::geteuid() != 0) {
    // Some group this user is not in: root's, unless it is a member.
    bool member_of_root = ::getegid() == 0;
    gid_t groups[256];
    const int n = ::getgroups(256, groups);
    for (int i = 0; i < n; ++i) member_of_root = member_of_root || groups[i] == 0;
    ASSERT_FALSE(member_of_root) << "no group to test with";
    const auto r = start_with_group("0");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().errnum, EPERM) << r.error().ToString();
    EXPECT_NE(r.error().what.find("systemctl enable --now monkeyproof-api.socket"),
              std::string::npos)
        << r.error().ToString();
  } else {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
          ::setresuid(65534, 65534, 65534) != 0) {
        ::_exit(10);
      }
      const auto r = start_with_group("0");
      if (r) ::_exit(11);
      if (r.error().errnum != EPERM) ::_exit(12);
      if (r.error().what.find("systemctl enable --now monkeyproof-api.socket") ==
          std::string::npos) {
        ::_exit(13);
      }
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "10: could not drop to nobody; 11: started; 12: not EPERM; 13: the message";
  }
  // Control: the API's own group.
  EXPECT_TRUE(start_with_group(std::to_string(::getegid())));
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
