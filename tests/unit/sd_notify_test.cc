// systemd's notify protocol and fd store as monkeyproofd speaks them (supervisor/sd_notify.h,
// fd_store.h), against a fake notify socket: a datagram socket bound in a mkdtemp directory (or
// in the abstract namespace) that receives exactly what PID 1 would, fds included. Also
// LISTEN_FDS/LISTEN_FDNAMES parsing, the fd names of sessions, and the fd_store config key.
// Runs as any user.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "supervisor/config.h"
#include "supervisor/fd_store.h"
#include "supervisor/sd_notify.h"
#include "temp_dir.h"

namespace mp::supervisor {
namespace {

// What one datagram to the fake notify socket carried.
struct Received {
  std::string text;
  std::vector<UniqueFd> fds;
};

class FakeNotifySocket {
 public:
  // Bound at `path`, or in the abstract namespace when it starts with '@'.
  explicit FakeNotifySocket(const std::string& address) : address_(address) {
    sock_.Reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    EXPECT_TRUE(sock_.valid());
    auto a = mp::sd::ParseNotifyAddress(address);
    EXPECT_TRUE(a.has_value()) << a.error().ToString();
    EXPECT_EQ(::bind(sock_.get(), reinterpret_cast<const sockaddr*>(&a->addr), a->len), 0)
        << std::strerror(errno);
  }
  const std::string& address() const { return address_; }

  // The next datagram; fails the test when none is queued.
  Received Next() {
    Received r;
    char buf[4096];
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_CMSG_CLOEXEC);
    EXPECT_GE(n, 0) << "no message: " << std::strerror(errno);
    if (n < 0) return r;
    EXPECT_EQ(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC), 0);
    r.text.assign(buf, static_cast<size_t>(n));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        r.fds.emplace_back(fd);
      }
    }
    return r;
  }
  bool Empty() {
    char b;
    return ::recv(sock_.get(), &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN;
  }

 private:
  std::string address_;
  UniqueFd sock_;
};

// Same open file (device and inode), e.g. a pipe end and the copy that came over SCM_RIGHTS.
bool SameFile(int a, int b) {
  struct stat sa {
  }, sb{};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

TEST(NotifyAddressTest, PathsAndAbstractNames) {
  auto path = mp::sd::ParseNotifyAddress("/run/systemd/notify");
  ASSERT_TRUE(path.has_value());
  EXPECT_STREQ(path->addr.sun_path, "/run/systemd/notify");
  EXPECT_EQ(path->len, offsetof(sockaddr_un, sun_path) + 19);
  auto abstract = mp::sd::ParseNotifyAddress("@mp/notify");
  ASSERT_TRUE(abstract.has_value());
  EXPECT_EQ(abstract->addr.sun_path[0], '\0');
  EXPECT_EQ(std::string(abstract->addr.sun_path + 1, 9), "mp/notify");
  EXPECT_EQ(abstract->len, offsetof(sockaddr_un, sun_path) + 10);
  for (const char* bad : {"", "@", "relative/notify", "vsock:2:1234"}) {
    EXPECT_FALSE(mp::sd::ParseNotifyAddress(bad).has_value()) << bad;
  }
  EXPECT_TRUE(mp::sd::ParseNotifyAddress("/" + std::string(106, 'x')).has_value());
  EXPECT_FALSE(mp::sd::ParseNotifyAddress("/" + std::string(107, 'x')).has_value())
      << "no room for the terminator";
  EXPECT_TRUE(mp::sd::ParseNotifyAddress("@" + std::string(107, 'x')).has_value());
  EXPECT_FALSE(mp::sd::ParseNotifyAddress("@" + std::string(108, 'x')).has_value());
}

TEST(NotifierTest, StatesReachAPathSocket) {
  test::TempDir dir("sd-notify");
  FakeNotifySocket fake(dir.path() + "/notify");
  auto n = sd::Notifier::Connect(fake.address());
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  ASSERT_TRUE(n->Send("READY=1").has_value());
  const Received r = fake.Next();
  EXPECT_EQ(r.text, "READY=1");
  EXPECT_TRUE(r.fds.empty());
  EXPECT_TRUE(fake.Empty());
}

TEST(NotifierTest, StoreSendsTheFdWithItsNameAndNoPolling) {
  test::TempDir dir("sd-notify");
  const std::string abstract = "@" + dir.path() + "/abstract";  // unique per test run
  FakeNotifySocket fake(abstract);
  auto n = sd::Notifier::Connect(abstract);
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe.has_value());
  ASSERT_TRUE(n->StoreFd("s-abc123.out", pipe->first.get()).has_value());
  Received r = fake.Next();
  EXPECT_EQ(r.text, "FDSTORE=1\nFDNAME=s-abc123.out\nFDPOLL=0");
  ASSERT_EQ(r.fds.size(), 1u);
  EXPECT_TRUE(SameFile(r.fds[0].get(), pipe->first.get()));
  // The stored copy reads what the writer writes: it is the pipe's read end, not a snapshot.
  ASSERT_EQ(::write(pipe->second.get(), "xy", 2), 2);
  char buf[2];
  EXPECT_EQ(::read(r.fds[0].get(), buf, 2), 2);
  EXPECT_EQ(std::string(buf, 2), "xy");

  ASSERT_TRUE(n->RemoveFd("s-abc123.out").has_value());
  r = fake.Next();
  EXPECT_EQ(r.text, "FDSTOREREMOVE=1\nFDNAME=s-abc123.out");
  EXPECT_TRUE(r.fds.empty());
  EXPECT_FALSE(n->StoreFd("bad:name", pipe->first.get()).has_value());
  EXPECT_FALSE(n->RemoveFd(std::string(256, 'a')).has_value());
  EXPECT_TRUE(fake.Empty()) << "a refused name must send nothing";
}

TEST(NotifierTest, ASocketThatIsGoneIsAnErrorNamingTheMessage) {
  test::TempDir dir("sd-notify");
  auto n = sd::Notifier::Connect(dir.path() + "/absent");
  ASSERT_TRUE(n.has_value());
  auto r = n->Send("READY=1");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errnum, ENOENT);
  EXPECT_NE(r.error().what.find("READY=1"), std::string::npos) << r.error().what;
}

TEST(NotifierTest, FromEnvironment) {
  ::unsetenv("NOTIFY_SOCKET");
  auto none = sd::Notifier::FromEnvironment();
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  ::setenv("NOTIFY_SOCKET", "not-absolute", 1);
  EXPECT_FALSE(sd::Notifier::FromEnvironment().has_value());
  test::TempDir dir("sd-notify");
  FakeNotifySocket fake(dir.path() + "/notify");
  ::setenv("NOTIFY_SOCKET", fake.address().c_str(), 1);
  auto some = sd::Notifier::FromEnvironment();
  ::unsetenv("NOTIFY_SOCKET");
  ASSERT_TRUE(some.has_value() && some->has_value());
  ASSERT_TRUE((*some)->Send("WATCHDOG=1").has_value());
  EXPECT_EQ(fake.Next().text, "WATCHDOG=1");
}

// The session side: every fd of a running session under its name, stdin dropped alone when it
// is closed, the rest dropped when the session ends, and nothing sent twice.
TEST(SessionFdStoreTest, StoresNamesAndRemovesEachOnce) {
  test::TempDir dir("sd-notify");
  FakeNotifySocket fake(dir.path() + "/notify");
  auto n = sd::Notifier::Connect(fake.address());
  ASSERT_TRUE(n.has_value());
  SessionFdStore store(std::move(*n));
  auto in = MakePipe(), out = MakePipe();
  ASSERT_TRUE(in.has_value() && out.has_value());
  using K = sd::FdKind;
  ASSERT_TRUE(store
                  .Store("s-A1", {{K::kIn, in->second.get()},
                                  {K::kOut, out->first.get()},
                                  {K::kPty, -1}})  // a pipe session has no PTY: skipped
                  .has_value());
  EXPECT_EQ(store.stored(), 2u);
  Received r = fake.Next();
  EXPECT_EQ(r.text, "FDSTORE=1\nFDNAME=s-A1.in\nFDPOLL=0");
  ASSERT_EQ(r.fds.size(), 1u);
  EXPECT_TRUE(SameFile(r.fds[0].get(), in->second.get()));
  r = fake.Next();
  EXPECT_EQ(r.text, "FDSTORE=1\nFDNAME=s-A1.out\nFDPOLL=0");
  ASSERT_EQ(r.fds.size(), 1u);
  EXPECT_TRUE(SameFile(r.fds[0].get(), out->first.get()));
  EXPECT_TRUE(fake.Empty());

  store.Remove("s-A1", K::kIn);
  EXPECT_EQ(fake.Next().text, "FDSTOREREMOVE=1\nFDNAME=s-A1.in");
  store.Remove("s-A1", K::kIn);   // already removed
  store.Remove("s-A1", K::kErr);  // never stored
  store.Remove("s-B2", K::kOut);  // another session
  EXPECT_TRUE(fake.Empty());
  store.RemoveAll("s-A1");
  EXPECT_EQ(fake.Next().text, "FDSTOREREMOVE=1\nFDNAME=s-A1.out");
  store.RemoveAll("s-A1");
  EXPECT_TRUE(fake.Empty());
  EXPECT_EQ(store.stored(), 0u);
}

TEST(SessionFdStoreTest, AFailedStoreNamesTheFd) {
  test::TempDir dir("sd-notify");
  auto n = sd::Notifier::Connect(dir.path() + "/absent");
  ASSERT_TRUE(n.has_value());
  SessionFdStore store(std::move(*n));
  auto p = MakePipe();
  ASSERT_TRUE(p.has_value());
  auto r = store.Store("s-A1", {{sd::FdKind::kPidfd, p->first.get()}});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().what.find("FDSTORE=1"), std::string::npos) << r.error().what;
  EXPECT_EQ(store.stored(), 0u);
}

std::vector<std::string> Names(const std::vector<sd::ListenedFd>& fds) {
  std::vector<std::string> out;
  for (size_t i = 0; i < fds.size(); ++i) {
    EXPECT_EQ(fds[i].fd, sd::kListenFdsStart + static_cast<int>(i));
    out.push_back(fds[i].name);
  }
  return out;
}

TEST(ListenFdsTest, WhatSystemdPasses) {
  auto r = mp::sd::ParseListenFds("42", "3", "s-a.out:s-a.pidfd:s-b.pty", 42, sd::kMaxListenFds);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(Names(r->fds), (std::vector<std::string>{"s-a.out", "s-a.pidfd", "s-b.pty"}));
  r = mp::sd::ParseListenFds("42", "2", nullptr, 42, sd::kMaxListenFds);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(Names(r->fds), (std::vector<std::string>{"unknown", "unknown"}));
  r = mp::sd::ParseListenFds("42", "2", "a:", 42,
                             sd::kMaxListenFds);  // an empty name is systemd's to give
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(Names(r->fds), (std::vector<std::string>{"a", ""}));
}

TEST(ListenFdsTest, NothingForUs) {
  for (auto [pid, fds, names] :
       std::initializer_list<std::tuple<const char*, const char*, const char*>>{
           {nullptr, "3", "a:b:c"},  // no LISTEN_PID: not from systemd
           {"41", "3", "a:b:c"},     // another process's (inherited by mistake)
           {"42", nullptr, nullptr},
           {"42", "0", nullptr},
           {"42", "0", ""}}) {
    auto r = mp::sd::ParseListenFds(pid, fds, names, 42, sd::kMaxListenFds);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_TRUE(r->fds.empty());
  }
}

TEST(ListenFdsTest, MalformedValuesAreErrors) {
  for (auto [pid, fds, names] :
       std::initializer_list<std::tuple<const char*, const char*, const char*>>{
           {"", "1", nullptr},
           {"0", "1", nullptr},
           {"4x", "1", nullptr},
           {"-42", "1", nullptr},
           {"42", "", nullptr},
           {"42", "-1", nullptr},
           {"42", " 1", nullptr},
           {"42", "1 ", nullptr},
           {"42", "0x1", nullptr},
           {"42", "99999999999999999999999", nullptr},
           {"42", "65537", nullptr},  // more than kMaxListenFds
           {"42", "2", "a"},          // fewer names
           {"42", "1", "a:b"},        // more names
           {"42", "0", "a"},
           {"42", "1", "a\n"},  // not printable
           {"42", "1", "\x7f"}}) {
    auto r = mp::sd::ParseListenFds(pid, fds, names, 42, sd::kMaxListenFds);
    EXPECT_FALSE(r.has_value()) << (pid ? pid : "(unset)") << " " << (fds ? fds : "(unset)") << " "
                                << (names ? names : "(unset)");
  }
  EXPECT_FALSE(
      mp::sd::ParseListenFds("42", "1", std::string(256, 'n').c_str(), 42, sd::kMaxListenFds)
          .has_value());
  EXPECT_TRUE(
      mp::sd::ParseListenFds("42", "1", std::string(255, 'n').c_str(), 42, sd::kMaxListenFds)
          .has_value());
}

TEST(ListenFdsTest, TakeUnsetsTheVariablesAndMarksTheFdsCloseOnExec) {
  // The fds start at 3 in a daemon; here they are whatever is open, so only the environment
  // side and a parse error are checked without touching the test's own descriptors.
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDS", "2", 1);
  ::setenv("LISTEN_FDNAMES", "only-one", 1);
  EXPECT_FALSE(mp::sd::TakeListenFds(sd::kMaxListenFds).has_value());
  EXPECT_EQ(std::getenv("LISTEN_PID"), nullptr);
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);
  EXPECT_EQ(std::getenv("LISTEN_FDNAMES"), nullptr);
  // Fd 3 onward as systemd would leave them: inheritable. dup2 them there for the check.
  auto p = MakePipe();
  ASSERT_TRUE(p.has_value());
  const int saved3 = ::fcntl(3, F_DUPFD_CLOEXEC, 100);  // whatever the runner has at 3
  ASSERT_EQ(::dup2(p->first.get(), 3), 3);
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDS", "1", 1);
  ::setenv("LISTEN_FDNAMES", "s-x.out", 1);
  auto taken = mp::sd::TakeListenFds(sd::kMaxListenFds);
  ASSERT_TRUE(taken.has_value()) << taken.error().ToString();
  ASSERT_EQ(taken->fds.size(), 1u);
  EXPECT_EQ(taken->fds[0].fd, 3);
  EXPECT_EQ(taken->fds[0].name, "s-x.out");
  EXPECT_TRUE(::fcntl(3, F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);
  if (saved3 >= 0) {
    ::dup3(saved3, 3, O_CLOEXEC);
    ::close(saved3);
  } else {
    ::close(3);
  }
}

TEST(FdNameTest, RoundTripAndRefusals) {
  using K = sd::FdKind;
  for (K k : {K::kPidfd, K::kStatus, K::kIn, K::kOut, K::kErr, K::kPty, K::kStage, K::kPtyQueue}) {
    const std::string name = sd::FdName("s-01J4ab", k);
    EXPECT_TRUE(sd::IsValidFdName(name)) << name;
    auto parsed = sd::ParseFdName(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(parsed->session_id, "s-01J4ab");
    EXPECT_EQ(parsed->kind, k);
  }
  EXPECT_EQ(sd::FdName("s-1", K::kStatus), "s-1.status");
  EXPECT_EQ(sd::FdName("s-1", K::kStage), "s-1.stage");
  EXPECT_EQ(sd::FdName("s-1", K::kPtyQueue), "s-1.ptyq");
  for (const char* bad : {"", "s-1", "s-1.", ".out", "s-1.stdout", "s-1.out.out", "x-1.out",
                          "s-.out", "s-1!.out", "unknown", "s-1.OUT"}) {
    EXPECT_FALSE(sd::ParseFdName(bad).has_value()) << bad;
  }
  EXPECT_TRUE(sd::ParseFdName("s-" + std::string(40, 'a') + ".in").has_value());
  EXPECT_FALSE(sd::ParseFdName("s-" + std::string(41, 'a') + ".in").has_value());
}

TEST(FdStoreConfigTest, AutoOrOff) {
  auto d = ParseConfig("t.conf", "");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->fd_store, FdStoreMode::kAuto);
  auto off = ParseConfig("t.conf", "fd_store = off\n");
  ASSERT_TRUE(off.has_value()) << off.error().ToString();
  EXPECT_EQ(off->fd_store, FdStoreMode::kOff);
  auto bad = ParseConfig("t.conf", "fd_store = yes\n");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().what.find("t.conf:1: fd_store"), std::string::npos) << bad.error().what;
}

}  // namespace
}  // namespace mp::supervisor
