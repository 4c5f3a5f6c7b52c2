// monkeyproofd with systemd's file-descriptor store, without systemd: this test plays the
// service manager. It binds the notify socket (NOTIFY_SOCKET), keeps the fds the daemon stores
// (FDSTORE=1, FDNAME=<session>.<kind>, FDPOLL=0) and hands them back to the next daemon
// through LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, as systemd does on a restart. Checked: a
// running session's fds are stored under their names, SIGTERM leaves it running, the next
// start ends it (supervisor_restart, no process left) and removes every name from the store;
// emptying the store while no supervisor runs ends the session by itself. The control:
// fd_store = off stores nothing, and SIGTERM ends the session as before. Runs in the test VM.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "control_client.h"
#include "proc_watch.h"

namespace mp::testing {
namespace {

const std::string kDaemon = MP_MONKEYPROOFD_PATH;
const std::string kBase = "/var/tmp/mp-fdstore-test";
const std::string kRoot = kBase + "/ws";
const std::string kWorkspace = kRoot + "/w";
const std::string kCgroup = "/sys/fs/cgroup/mp-fdstore-test";
// The cgroup the daemon makes below its root for the session leaves (sandbox::kSessionsCgroup).
const std::string kLeaves = kCgroup + "/sessions";
const std::string kNotify = kBase + "/notify";

const char kExecPolicy[] = R"({
  "description": "test exec", "type": "exec", "command": [],
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-fdstore-test/ws"],
  "default_workspace": "/var/tmp/mp-fdstore-test/ws/w",
  "env": {"set": {"PATH": "/usr/bin:/bin"}}
})";

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The service manager's side: the notify socket and the store.
class FakeManager {
 public:
  FakeManager() {
    ::unlink(kNotify.c_str());
    sock_.Reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    struct sockaddr_un a {};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, kNotify.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::bind(sock_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
        << std::strerror(errno);
  }

  // Reads one message within `ms`; applies FDSTORE/FDSTOREREMOVE to the store. False: none.
  bool Receive(int ms) {
    struct pollfd p = {sock_.get(), POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) return false;
    char buf[4096];
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return false;
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_type != SCM_RIGHTS) continue;
      for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.emplace_back(fd);
      }
    }
    const std::string text(buf, static_cast<size_t>(n));
    messages.push_back(text);
    const size_t at = text.find("FDNAME=");
    const std::string name =
        at == std::string::npos ? "" : text.substr(at + 7, text.find('\n', at) - (at + 7));
    if (text.starts_with("FDSTORE=1\n")) {
      EXPECT_NE(text.find("\nFDPOLL=0"), std::string::npos) << text;
      EXPECT_EQ(fds.size(), 1u) << text;
      for (auto& fd : fds) store.push_back({name, std::move(fd)});
    } else if (text.starts_with("FDSTOREREMOVE=1\n")) {
      ++removals[name];
      std::erase_if(store, [&](const auto& e) { return e.first == name; });
    }
    return true;
  }
  // Reads until `done` or `ms` pass without a message.
  void ReceiveUntil(const std::function<bool()>& done, int ms = 20000) {
    while (!done() && Receive(ms)) {
    }
  }
  std::set<std::string> StoredNames() const {
    std::set<std::string> out;
    for (const auto& e : store) out.insert(e.first);
    return out;
  }
  bool Said(const std::string& text) const {
    return std::find(messages.begin(), messages.end(), text) != messages.end();
  }

  std::vector<std::string> messages;
  std::vector<std::pair<std::string, UniqueFd>> store;  // in the order stored
  std::map<std::string, int> removals;

 private:
  UniqueFd sock_;
};

class Daemon {
 public:
  explicit Daemon(const std::string& extra_conf) {
    if (std::system(("rm -rf " + kBase).c_str()) != 0) ADD_FAILURE() << "rm -rf " << kBase;
    ::mkdir(kBase.c_str(), 0755);
    ::mkdir(kRoot.c_str(), 0755);
    ::mkdir(kWorkspace.c_str(), 0777);
    ::chmod(kWorkspace.c_str(), 0777);
    ::mkdir((kBase + "/policies").c_str(), 0755);
    WriteFile(kBase + "/policies/exec.json", kExecPolicy);
    WriteFile(kBase + "/monkeyproof.conf", "kill_grace_ms = 500\napi_user = root\n" + extra_conf);
  }
  ~Daemon() { Stop(SIGKILL); }

  // Starts the daemon with NOTIFY_SOCKET, and `store`'s fds passed as systemd passes them.
  void Start(const FakeManager& manager) {
    pid_ = ::fork();
    if (pid_ != 0) return;
    const int log = ::open((kBase + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(log, 2);
    // Fds 3.. as systemd leaves them: first out of the way (they may sit at 3..), then placed.
    std::vector<int> moved;
    std::string names;
    for (const auto& [name, fd] : manager.store) {
      moved.push_back(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 1000));
      names += (names.empty() ? "" : ":") + name;
    }
    for (size_t i = 0; i < moved.size(); ++i) ::dup2(moved[i], 3 + static_cast<int>(i));
    if (!moved.empty()) {
      ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
      ::setenv("LISTEN_FDS", std::to_string(moved.size()).c_str(), 1);
      ::setenv("LISTEN_FDNAMES", names.c_str(), 1);
    }
    ::setenv("NOTIFY_SOCKET", kNotify.c_str(), 1);
    ::execl(kDaemon.c_str(), kDaemon.c_str(), "--config", (kBase + "/monkeyproof.conf").c_str(),
            "--state-dir", (kBase + "/state").c_str(), "--socket",
            (kBase + "/run/control.sock").c_str(), "--cgroup-root", kCgroup.c_str(), "--policies",
            (kBase + "/policies").c_str(), "--audit-log", (kBase + "/audit.log").c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Sends `sig` and reaps the daemon; its exit status.
  int Stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  std::string socket() const { return kBase + "/run/control.sock"; }
  static std::string Log() { return Slurp(kBase + "/daemon.log"); }

 private:
  pid_t pid_ = -1;
};

std::string SpawnSleeper(ControlClient& c, const std::string& tag) {
  wire::SpawnRequest req;
  req.task = "sleep " + tag + " & wait";
  req.client = "test";
  auto r = c.Call(req);
  EXPECT_TRUE(r && r->ok()) << (r ? "error response" : r.error().ToString());
  if (!r || !r->ok()) return "";
  return std::get<wire::SessionInfo>(r->body).id;
}

size_t Sleepers(const std::string& id, const std::string& tag) {
  const auto procs = LeafProcesses(kLeaves + "/" + id).value_or(std::vector<pid_t>{});
  return static_cast<size_t>(std::count_if(procs.begin(), procs.end(),
                                           [&](pid_t p) { return Cmdline(p) == "sleep " + tag; }));
}

std::optional<wire::SessionInfo> Get(ControlClient& c, const std::string& id) {
  auto got = c.Call(wire::GetRequest{id});
  if (!got) return std::nullopt;
  auto* info = std::get_if<wire::SessionInfo>(&got->body);
  if (info == nullptr) return std::nullopt;
  return *info;
}

TEST(FdStoreTest, RunningSessionsKeepTheirFdsInTheStoreAndOutliveSigterm) {
  Daemon daemon("");  // first: it empties the test's directory, where the notify socket goes
  FakeManager manager;
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  ASSERT_TRUE(manager.Said("READY=1")) << Daemon::Log();
  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
  const std::string id = SpawnSleeper(*c, "1601");
  ASSERT_FALSE(id.empty());
  const std::set<std::string> want = {id + ".pidfd", id + ".status", id + ".in", id + ".out",
                                      id + ".err"};
  manager.ReceiveUntil([&] { return manager.StoredNames() == want; });
  EXPECT_EQ(manager.StoredNames(), want);
  ASSERT_TRUE(WaitFor([&] { return Sleepers(id, "1601") == 1; }, std::chrono::seconds(30)));

  // SIGTERM: the supervisor stops alone; the session runs on.
  const int status = daemon.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << Daemon::Log();
  manager.ReceiveUntil([&] { return manager.Said("STOPPING=1"); }, 2000);
  EXPECT_TRUE(manager.Said("STOPPING=1"));
  ::usleep(1000 * 1000);
  EXPECT_EQ(Sleepers(id, "1601"), 1u) << "the session did not outlive the supervisor";
  EXPECT_TRUE(manager.removals.empty()) << "a stopping supervisor emptied the store";

  // The next start gets the fds back; without re-adoption it ends the session and releases them.
  manager.messages.clear();
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  for (const auto& name : want) {
    EXPECT_EQ(manager.removals[name], 1) << name << " not removed from the store once";
  }
  EXPECT_TRUE(manager.store.empty());
  auto c2 = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c2) << Daemon::Log();
  auto info = Get(*c2, id);
  ASSERT_TRUE(info && info->end) << Daemon::Log();
  EXPECT_EQ(info->end->reason, wire::EndReason::kSupervisorRestart);
  EXPECT_TRUE(WaitFor([&] { return Sleepers(id, "1601") == 0; }, std::chrono::seconds(30)));
  struct stat st {};
  EXPECT_NE(::stat((kLeaves + "/" + id).c_str(), &st), 0) << "the session's leaf is left";
  EXPECT_NE(Daemon::Log().find("closed and released 5 descriptors of 1 sessions"),
            std::string::npos)
      << Daemon::Log();
}

// systemd < 254 empties the store on `systemctl stop`: the session can never be adopted and
// ends by itself (its init leaves once nobody holds the report socket).
TEST(FdStoreTest, ASessionEndsWhenTheStoreIsEmptiedWhileNoSupervisorRuns) {
  Daemon daemon("");  // first: it empties the test's directory, where the notify socket goes
  FakeManager manager;
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
  const std::string id = SpawnSleeper(*c, "1602");
  ASSERT_FALSE(id.empty());
  manager.ReceiveUntil([&] { return manager.store.size() == 5; });
  ASSERT_EQ(manager.store.size(), 5u);
  ASSERT_TRUE(WaitFor([&] { return Sleepers(id, "1602") == 1; }, std::chrono::seconds(30)));
  daemon.Stop(SIGTERM);
  ::usleep(500 * 1000);
  ASSERT_EQ(Sleepers(id, "1602"), 1u) << "the session did not outlive the supervisor";
  manager.store.clear();  // the unit stopped: systemd closes what it kept
  EXPECT_TRUE(WaitFor([&] { return Sleepers(id, "1602") == 0; }, std::chrono::seconds(30)))
      << "the session ran on with nobody to adopt it";
}

// Control: fd_store = off under the same manager. Nothing is stored, and SIGTERM ends the
// session (supervisor_restart) as before.
TEST(FdStoreTest, ControlStoreOffStoresNothingAndSigtermEndsSessions) {
  Daemon daemon("fd_store = off\n");
  FakeManager manager;
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  ASSERT_TRUE(manager.Said("READY=1")) << Daemon::Log();
  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
  const std::string id = SpawnSleeper(*c, "1603");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return Sleepers(id, "1603") == 1; }, std::chrono::seconds(30)));
  while (manager.Receive(500)) {
  }
  EXPECT_TRUE(manager.store.empty()) << "fd_store = off stored " << manager.store.size();
  daemon.Stop(SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return Sleepers(id, "1603") == 0; }, std::chrono::seconds(30)))
      << "with the store off the session outlived SIGTERM";
  const std::string record = Slurp(kBase + "/state/sessions/" + id + "/record.json");
  EXPECT_NE(record.find("supervisor_restart"), std::string::npos) << record;
}

}  // namespace
}  // namespace mp::testing
