// Socket activation in monkeyproof-api (http/listen_fds.h): the LISTEN_PID / LISTEN_FDS /
// LISTEN_FDNAMES parser as a table (what systemd passes, what is not ours, what is malformed),
// then as a fuzz-ish sweep of generated values checked against the parser's invariants; the
// check that a passed fd is a listening Unix stream socket, against real fds of every other
// kind; and TakeInheritedUnixSockets on a real environment and fds 3 and 4, in a child process
// (it unsets the variables and owns the fds). Runs as any user.
#include "http/listen_fds.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/sd_daemon.h"
#include "temp_dir.h"

namespace mp::http {
namespace {

constexpr pid_t kSelf = 4242;

struct Case {
  const char* pid;
  const char* fds;
  const char* names;
  int expect_fds;         // -1: an error
  const char* expect_in;  // in the error, or in `ignored` (nullptr: ignored must be empty)
};

TEST(ListenFdsTest, Table) {
  const Case cases[] = {
      // What systemd passes.
      {"4242", "1", "monkeyproof-api.socket", 1, nullptr},
      {"4242", "2", "a:b", 2, nullptr},
      {"4242", "1", nullptr, 1, nullptr},  // no names: "unknown"
      {"4242", "1", "", 1, nullptr},       // one empty name
      {"4242", "2", "a:", 2, nullptr},
      {"04242", "01", "x", 1, nullptr},  // leading zeros are still the number
      {"4242", "64", nullptr, 64, nullptr},
      // Nothing for us, and no error.
      {nullptr, nullptr, nullptr, 0, nullptr},
      {"4242", nullptr, nullptr, 0, nullptr},
      {"4242", "0", nullptr, 0, nullptr},
      {"4242", "0", "", 0, nullptr},  // systemd's LISTEN_FDNAMES with no fds
      {"4243", "1", "x", 0, "names another process (this is 4242)"},
      {"1", "3", nullptr, 0, "LISTEN_PID=1 names another process"},
      {"4243", nullptr, nullptr, 0, nullptr},  // nothing passed, to anyone
      {nullptr, "1", "x", 0, "LISTEN_FDS=\"1\" is set without LISTEN_PID"},
      // Malformed: errors.
      {"", "1", nullptr, -1, "LISTEN_PID=\"\" is not a process id"},
      {"0", "1", nullptr, -1, "LISTEN_PID=\"0\" is not a process id"},
      {"-4242", "1", nullptr, -1, "is not a process id"},
      {"+4242", "1", nullptr, -1, "is not a process id"},
      {" 4242", "1", nullptr, -1, "is not a process id"},
      {"4242 ", "1", nullptr, -1, "is not a process id"},
      {"4242x", "1", nullptr, -1, "is not a process id"},
      {"0x1092", "1", nullptr, -1, "is not a process id"},
      {"99999999999", "1", nullptr, -1, "is not a process id"},
      {"4242", "", nullptr, -1, "LISTEN_FDS=\"\" is not a number"},
      {"4242", "-1", nullptr, -1, "LISTEN_FDS=\"-1\" is not a number"},
      {"4242", "1.0", nullptr, -1, "is not a number"},
      {"4242", "one", nullptr, -1, "is not a number"},
      {"4242", "18446744073709551617", nullptr, -1, "is not a number"},
      {"4242", "65", nullptr, -1, "LISTEN_FDS=65 is more than the 64 fds"},
      {"4242", "4294967299", nullptr, -1, "is more than the 64"},
      {"4242", "1", "a:b", -1, "LISTEN_FDNAMES names more fds than LISTEN_FDS=1"},
      {"4242", "2", "a", -1, "LISTEN_FDNAMES names fewer fds than LISTEN_FDS=2"},
      {"4242", "0", "a", -1, "names more fds than LISTEN_FDS=0"},
      {"4242", "1", "bad\x01name", -1, "LISTEN_FDNAMES: name 1 is not a valid fd name"},
      {"4242", "2", "ok:caf\xc3\xa9", -1, "name 2 is not a valid fd name"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string("LISTEN_PID=") + (c.pid ? c.pid : "(unset)") +
                 " LISTEN_FDS=" + (c.fds ? c.fds : "(unset)") +
                 " LISTEN_FDNAMES=" + (c.names ? c.names : "(unset)"));
    const auto r = sd::ParseListenFds(c.pid, c.fds, c.names, kSelf, kMaxListenFds);
    if (c.expect_fds < 0) {
      ASSERT_FALSE(r);
      EXPECT_NE(r.error().what.find(c.expect_in), std::string::npos) << r.error().what;
      continue;
    }
    ASSERT_TRUE(r) << r.error().what;
    ASSERT_EQ(r->fds.size(), static_cast<size_t>(c.expect_fds));
    for (size_t i = 0; i < r->fds.size(); ++i) EXPECT_EQ(r->fds[i].fd, 3 + static_cast<int>(i));
    if (c.expect_in == nullptr) {
      EXPECT_EQ(r->ignored, "");
    } else {
      EXPECT_NE(r->ignored.find(c.expect_in), std::string::npos) << r->ignored;
    }
  }
  // The names, as given; "unknown" without LISTEN_FDNAMES.
  auto r = sd::ParseListenFds("4242", "3", "monkeyproof-api.socket::x y", kSelf, kMaxListenFds);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->fds[0].name, "monkeyproof-api.socket");
  EXPECT_EQ(r->fds[1].name, "");
  EXPECT_EQ(r->fds[2].name, "x y");
  r = sd::ParseListenFds("4242", "2", nullptr, kSelf, kMaxListenFds);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->fds[1].name, "unknown");
  // A name of 255 bytes is systemd's longest; 256 is not a name.
  EXPECT_TRUE(sd::ParseListenFds("4242", "1", std::string(255, 'n').c_str(), kSelf, kMaxListenFds));
  EXPECT_FALSE(
      sd::ParseListenFds("4242", "1", std::string(256, 'n').c_str(), kSelf, kMaxListenFds));
}

// Values built from the characters that matter (digits, ':', signs, blanks, controls, letters),
// often near valid ones; every outcome must keep the parser's promises: fds from 3 in order, as
// many as LISTEN_FDS says and never more than kMaxListenFds, only for LISTEN_PID == self, only
// valid names; an error only when some value is malformed; `ignored` only without fds.
TEST(ListenFdsTest, GeneratedValuesKeepTheInvariants) {
  std::mt19937 rng(20261207);  // fixed: a failure reproduces
  const std::string alphabet =
      "0123456789:::--+ \t\x01\x7f"
      "abcxyz.\xc3";
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  auto random_text = [&](size_t max_len) {
    std::string s;
    for (size_t n = pick(max_len + 1); n > 0; --n) s += alphabet[pick(alphabet.size())];
    return s;
  };
  auto value = [&](int kind) -> std::string {
    switch (kind) {
      case 0:
        return std::to_string(kSelf);
      case 1:
        return std::to_string(pick(70));
      case 2:
        return std::to_string(pick(100000));
      default:
        return random_text(12);
    }
  };
  size_t with_fds = 0, errors = 0, ignored = 0;
  for (int i = 0; i < 20000; ++i) {
    const bool has_pid = pick(8) != 0, has_fds = pick(8) != 0, has_names = pick(2) != 0;
    const std::string pid = value(static_cast<int>(pick(5)));
    const std::string fds = value(1 + static_cast<int>(pick(4)));
    std::string names;
    if (pick(2) == 0) {
      // A list of plausible names, sometimes of the right length.
      const size_t n = pick(6);
      for (size_t k = 0; k < n; ++k) names += (k ? ":" : "") + random_text(6);
    } else {
      names = random_text(30);
    }
    const char* p = has_pid ? pid.c_str() : nullptr;
    const char* f = has_fds ? fds.c_str() : nullptr;
    const char* n = has_names ? names.c_str() : nullptr;
    SCOPED_TRACE("case " + std::to_string(i));
    const auto r = sd::ParseListenFds(p, f, n, kSelf, kMaxListenFds);
    if (!r) {
      ++errors;
      EXPECT_NE(p, nullptr) << "an error without LISTEN_PID";
      EXPECT_FALSE(r.error().what.empty());
      continue;
    }
    if (!r->fds.empty()) {
      ++with_fds;
      ASSERT_NE(p, nullptr);
      ASSERT_NE(f, nullptr);
      EXPECT_EQ(std::strtoull(p, nullptr, 10), static_cast<unsigned long long>(kSelf)) << p;
      EXPECT_EQ(std::strtoull(f, nullptr, 10), r->fds.size()) << f;
      EXPECT_LE(r->fds.size(), kMaxListenFds);
      EXPECT_EQ(r->ignored, "");
      for (size_t k = 0; k < r->fds.size(); ++k) {
        EXPECT_EQ(r->fds[k].fd, sd::kListenFdsStart + static_cast<int>(k));
        EXPECT_TRUE(sd::IsValidFdName(r->fds[k].name)) << r->fds[k].name;
      }
    }
    if (!r->ignored.empty()) {
      ++ignored;
      EXPECT_NE(f, nullptr) << "ignored what was not set";
    }
  }
  // The sweep reached every outcome (otherwise it proves little).
  EXPECT_GT(with_fds, 100u);
  EXPECT_GT(errors, 100u);
  EXPECT_GT(ignored, 100u);
}

// Each kind of fd that is not a listening Unix or TCP stream socket is refused with what it
// is; listening ones pass, with their family.
TEST(ListenFdsTest, OnlyAListeningUnixOrTcpStreamSocketPasses) {
  test::TempDir dir("mp-listen-fds");
  auto bound_unix = [&](int type, const std::string& name) {
    UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string path = dir.path() + "/" + name;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  };
  auto bound_ip = [](int family, int type) {
    UniqueFd fd(::socket(family, type | SOCK_CLOEXEC, 0));
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    }
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
    return fd;
  };
  auto refused = [](int fd, const char* why) {
    const auto r = CheckListeningSocket(fd);
    EXPECT_FALSE(r) << why;
    if (!r) {
      EXPECT_NE(r.error().ToString().find(why), std::string::npos) << r.error().ToString();
    }
  };
  auto passes = [](int fd, int family) {
    const auto r = CheckListeningSocket(fd);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(*r, family);
  };
  UniqueFd listening = bound_unix(SOCK_STREAM, "listening.sock");
  ASSERT_EQ(::listen(listening.get(), 8), 0);
  passes(listening.get(), AF_UNIX);
  UniqueFd tcp = bound_ip(AF_INET, SOCK_STREAM);
  ASSERT_EQ(::listen(tcp.get(), 8), 0);
  passes(tcp.get(), AF_INET);
  UniqueFd tcp6 = bound_ip(AF_INET6, SOCK_STREAM);
  ASSERT_EQ(::listen(tcp6.get(), 8), 0);
  passes(tcp6.get(), AF_INET6);

  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
  refused(r.get(), "is not a socket");
  refused(1000000, "is not open");
  UniqueFd netlink(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0));
  refused(netlink.get(), "neither Unix nor IP");
  refused(bound_ip(AF_INET, SOCK_DGRAM).get(), "an IP datagram socket, not a stream one");
  refused(bound_ip(AF_INET, SOCK_STREAM).get(), "an IP stream socket that is not listening");
  refused(bound_unix(SOCK_DGRAM, "dgram.sock").get(), "datagram socket, not a stream one");
  UniqueFd seqpacket = bound_unix(SOCK_SEQPACKET, "seqpacket.sock");
  ASSERT_EQ(::listen(seqpacket.get(), 8), 0);
  refused(seqpacket.get(), "seqpacket socket, not a stream one");
  refused(bound_unix(SOCK_STREAM, "bound-only.sock").get(), "not listening");
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  refused(a.get(), "not listening (a connection: the socket unit must have Accept=no");
}

TEST(ListenFdsTest, StoredListenerNamesAreFdNamesAndTellAddressesApart) {
  using boost::asio::ip::make_address;
  using boost::asio::ip::tcp;
  const tcp::endpoint v4(make_address("127.0.0.1"), 3200);
  const tcp::endpoint v6(make_address("::1"), 3200);
  const tcp::endpoint other_port(make_address("127.0.0.1"), 3201);
  EXPECT_EQ(StoredListenerName(v4), "api-tcp-127.0.0.1-3200");
  EXPECT_EQ(StoredListenerName(v6), "api-tcp-__1-3200");
  for (const auto& e : {v4, v6, other_port}) {
    EXPECT_TRUE(sd::IsValidFdName(StoredListenerName(e))) << StoredListenerName(e);
    EXPECT_TRUE((InheritedTcpSocket{UniqueFd(), StoredListenerName(e), e}.stored()));
  }
  EXPECT_NE(StoredListenerName(v4), StoredListenerName(other_port));
  // A socket unit's fd is not one the API stored.
  EXPECT_FALSE((InheritedTcpSocket{UniqueFd(), "monkeyproof-api.socket", v4}.stored()));
}

// Runs `body` in a child process whose fds 3 and 4 are `fd3` and `fd4` (-1: closed) and whose
// LISTEN_* variables are `pid` (with "self" for the child's pid), `fds` and `names` (nullptr:
// unset). The child's exit status: 0 when body returned "", else 1 after printing it.
int InChild(int fd3, int fd4, const char* pid, const char* fds, const char* names,
            const std::function<std::string()>& body) {
  const pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    // Fds 3 and 4 are whatever the test process had there (fd3 or fd4 among them, maybe):
    // copies out of the way first, then onto 3 and 4 (dup2 leaves them without close-on-exec,
    // as systemd passes them).
    const int hi3 = fd3 >= 0 ? ::fcntl(fd3, F_DUPFD_CLOEXEC, 100) : -1;
    const int hi4 = fd4 >= 0 ? ::fcntl(fd4, F_DUPFD_CLOEXEC, 100) : -1;
    if ((fd3 >= 0 && hi3 < 0) || (fd4 >= 0 && hi4 < 0)) ::_exit(2);
    if (hi3 >= 0 ? ::dup2(hi3, 3) != 3 : (::close(3), false)) ::_exit(2);
    if (hi4 >= 0 ? ::dup2(hi4, 4) != 4 : (::close(4), false)) ::_exit(2);
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
    if (pid != nullptr) {
      const std::string p = std::string(pid) == "self" ? std::to_string(::getpid()) : pid;
      ::setenv("LISTEN_PID", p.c_str(), 1);
    }
    if (fds != nullptr) ::setenv("LISTEN_FDS", fds, 1);
    if (names != nullptr) ::setenv("LISTEN_FDNAMES", names, 1);
    const std::string failure = body();
    if (!failure.empty()) std::fprintf(stderr, "child: %s\n", failure.c_str());
    std::fflush(stderr);
    ::_exit(failure.empty() ? 0 : 1);
  }
  int status = 0;
  if (::waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

std::string VariablesGone() {
  for (const char* v : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) {
    if (std::getenv(v) != nullptr) return std::string(v) + " is still set";
  }
  return "";
}

TEST(ListenFdsTest, TakeFromTheEnvironment) {
  test::TempDir dir("mp-listen-fds");
  auto listening = [&](const std::string& name) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string path = dir.path() + "/" + name;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd.get(), 8), 0);
    return fd;
  };
  UniqueFd api = listening("api.sock"), second = listening("second.sock");
  const std::string api_path = dir.path() + "/api.sock";
  const std::string second_path = dir.path() + "/second.sock";

  // Two sockets with names: both taken, close-on-exec, owned, the variables gone.
  EXPECT_EQ(
      InChild(api.get(), second.get(), "self", "2", "monkeyproof-api.socket:extra",
              [&]() -> std::string {
                // dup2 clears close-on-exec: Take must set it.
                if (::fcntl(3, F_GETFD) & FD_CLOEXEC) return "fd 3 starts close-on-exec";
                auto r = TakeInheritedSockets();
                if (!r) return r.error().ToString();
                if (auto gone = VariablesGone(); !gone.empty()) return gone;
                if (r->unix_sockets.size() != 2) return "not 2 sockets";
                if (r->unix_sockets[0].fd.get() != 3 || r->unix_sockets[1].fd.get() != 4)
                  return "not fds 3 and 4";
                if (r->unix_sockets[0].name != "monkeyproof-api.socket" ||
                    r->unix_sockets[1].name != "extra")
                  return "names " + r->unix_sockets[0].name + ", " + r->unix_sockets[1].name;
                if (r->unix_sockets[0].path != api_path || r->unix_sockets[1].path != second_path)
                  return "paths " + r->unix_sockets[0].path + ", " + r->unix_sockets[1].path;
                if (!(::fcntl(3, F_GETFD) & FD_CLOEXEC) || !(::fcntl(4, F_GETFD) & FD_CLOEXEC))
                  return "not close-on-exec";
                r->unix_sockets.clear();  // owned: closed now
                if (::fcntl(3, F_GETFD) != -1) return "fd 3 not owned";
                return "";
              }),
      0);
  // Meant for another process: nothing taken, fd 3 left alone, said why, the variables gone.
  EXPECT_EQ(InChild(api.get(), -1, "1", "1", nullptr,
                    [&]() -> std::string {
                      auto r = TakeInheritedSockets();
                      if (!r) return r.error().ToString();
                      if (auto gone = VariablesGone(); !gone.empty()) return gone;
                      if (!r->unix_sockets.empty()) return "took another process's socket";
                      if (r->ignored.find("names another process") == std::string::npos)
                        return "ignored: " + r->ignored;
                      if (::fcntl(3, F_GETFD) == -1) return "fd 3 closed";
                      return "";
                    }),
            0);
  // Nothing set: nothing taken, nothing to say.
  EXPECT_EQ(InChild(-1, -1, nullptr, nullptr, nullptr,
                    [&]() -> std::string {
                      auto r = TakeInheritedSockets();
                      if (!r) return r.error().ToString();
                      return r->unix_sockets.empty() && r->ignored.empty() ? "" : "took something";
                    }),
            0);
  // A Unix socket and a TCP one (as the store gives it back): sorted by kind, the TCP one with
  // its address and name.
  UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in loopback{};
  loopback.sin_family = AF_INET;
  loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(tcp.get(), reinterpret_cast<sockaddr*>(&loopback), sizeof loopback), 0);
  ASSERT_EQ(::listen(tcp.get(), 8), 0);
  socklen_t len = sizeof loopback;
  ASSERT_EQ(::getsockname(tcp.get(), reinterpret_cast<sockaddr*>(&loopback), &len), 0);
  const uint16_t port = ntohs(loopback.sin_port);
  EXPECT_EQ(
      InChild(api.get(), tcp.get(), "self", "2",
              ("monkeyproof-api.socket:api-tcp-127.0.0.1-" + std::to_string(port)).c_str(),
              [&]() -> std::string {
                auto r = TakeInheritedSockets();
                if (!r) return r.error().ToString();
                if (r->unix_sockets.size() != 1 || r->tcp_sockets.size() != 1)
                  return "not one of each";
                const auto& t = r->tcp_sockets[0];
                if (t.fd.get() != 4) return "the TCP socket is not fd 4";
                if (t.endpoint.address().to_string() != "127.0.0.1" || t.endpoint.port() != port)
                  return "endpoint " + t.endpoint.address().to_string();
                if (!t.stored()) return "not recognised as stored: " + t.name;
                return "";
              }),
      0);
  // A pipe where a socket should be, a closed fd, a malformed count: errors that say which,
  // and the variables gone all the same.
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd pr(pipe_fds[0]), pw(pipe_fds[1]);
  auto expect_error = [&](const std::string& want) {
    return [want]() -> std::string {
      auto r = TakeInheritedSockets();
      if (auto gone = VariablesGone(); !gone.empty()) return gone;
      if (r) return "no error";
      if (r.error().ToString().find(want) == std::string::npos) return r.error().ToString();
      return "";
    };
  };
  EXPECT_EQ(InChild(api.get(), pr.get(), "self", "2", "monkeyproof-api.socket:pipe",
                    expect_error("\"pipe\": fd 4 is not a socket")),
            0);
  EXPECT_EQ(InChild(api.get(), -1, "self", "2", nullptr, expect_error("fd 4 is not open")), 0);
  EXPECT_EQ(InChild(api.get(), -1, "self", "x", nullptr,
                    expect_error("LISTEN_FDS=\"x\" is not a number")),
            0);
}

}  // namespace
}  // namespace mp::http
