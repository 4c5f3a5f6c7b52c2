// monkeyproofd with systemd's file-descriptor store, without systemd: this test plays the
// service manager. It binds the notify socket (NOTIFY_SOCKET), keeps the fds the daemon stores
// (FDSTORE=1, FDNAME=<session>.<kind>, FDPOLL=0) and hands them back to the next daemon
// through LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, as systemd does on a restart. Checked: a
// running session's fds are stored under their names, SIGTERM leaves it running, and the next
// start re-adopts it: output continues byte for byte, stdin, end of file, the terminal and its
// resize work, and a command that ended while no supervisor ran gets its exact end record.
// An adoption record of another format ends the session cleanly; emptying the store while no
// supervisor runs ends the session by itself. The control: fd_store = off stores nothing, and
// SIGTERM ends the session as supervisor_restart. Runs in the test VM.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "control_client.h"
#include "fake_manager.h"
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

const char kShellPolicy[] = R"({
  "description": "test interactive shell", "type": "interactive",
  "command": ["/bin/sh", "-c"], "bypasses_agent_permissions": false,
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-fdstore-test/ws"],
  "default_workspace": "/var/tmp/mp-fdstore-test/ws/w",
  "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TERM": "dumb"}}
})";

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

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
    WriteFile(kBase + "/policies/shell.json", kShellPolicy);
    WriteFile(kBase + "/monkeyproof.conf", "kill_grace_ms = 500\napi_user = root\n" + extra_conf);
  }
  ~Daemon() { Stop(SIGKILL); }

  // Starts the daemon with NOTIFY_SOCKET, and `store`'s fds passed as systemd passes them.
  void Start(const FakeManager& manager) {
    pid_ = ::fork();
    if (pid_ != 0) return;
    const int log = ::open((kBase + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(log, 2);
    manager.PassToChild();
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

wire::SessionInfo SpawnTask(ControlClient& c, const std::string& task, bool pty = false) {
  wire::SpawnRequest req;
  req.task = task;
  req.client = "test";
  if (pty) {
    req.type = wire::SessionType::kInteractive;
    req.preset = "shell";
    req.pty = wire::PtySize{30, 100};
  }
  auto r = c.Call(req);
  EXPECT_TRUE(r && r->ok()) << (r ? "error response" : r.error().ToString());
  if (!r || !r->ok()) return {};
  return std::get<wire::SessionInfo>(r->body);
}

// The whole output from offset 0, as the supervisor holds it; gaps are failures.
std::string ReadAll(ControlClient& c, const std::string& id) {
  auto out = c.ReadAllOutput(id);
  EXPECT_TRUE(out) << out.error().ToString();
  return out ? *out : std::string();
}

std::optional<wire::SessionInfo> WaitEnded(ControlClient& c, const std::string& id) {
  std::optional<wire::SessionInfo> info;
  WaitFor(
      [&] {
        info = Get(c, id);
        return info && info->end;
      },
      std::chrono::seconds(60));
  return info;
}

size_t LeafCount() {
  size_t n = 0;
  if (DIR* d = ::opendir(kLeaves.c_str())) {
    while (const dirent* e = ::readdir(d)) n += std::string(e->d_name).starts_with("s-");
    ::closedir(d);
  }
  return n;
}

// The sequence the printer session prints: "line 1\n" … "line 40000\n", with short pauses,
// for about twenty seconds.
const char kPrinter[] =
    "for i in $(seq 1 40000); do echo \"line $i\"; "
    "if [ $((i % 400)) = 0 ]; then sleep 0.2; fi; done";

std::string PrinterOutput() {
  std::string out;
  for (int i = 1; i <= 40000; ++i) out += "line " + std::to_string(i) + "\n";
  return out;
}

TEST(FdStoreTest, ARestartedSupervisorReadoptsRunningSessions) {
  Daemon daemon("");  // first: it empties the test's directory, where the notify socket goes
  FakeManager manager(kNotify);
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  ASSERT_TRUE(manager.Said("READY=1")) << Daemon::Log();
  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
  // The notify socket queues few datagrams (net.unix.max_dgram_qlen, 10 by default); systemd
  // reads them at once, and so does the test after each spawn.
  auto spawn = [&](const std::string& task, bool pty = false) {
    const std::string id = SpawnTask(*c, task, pty).id;
    const size_t fds = pty ? 3 : 5;
    manager.ReceiveUntil([&] {
      const auto names = manager.StoredNames();
      return static_cast<size_t>(std::count_if(names.begin(), names.end(), [&](const auto& n) {
               return n.starts_with(id + ".");
             })) == fds;
    });
    return id;
  };
  const std::string printer = spawn(kPrinter);
  const std::string reader = spawn("while read x; do echo \"got $x\"; done; echo eof; exit 3");
  // These two end once the test has stopped the supervisor (the file "go" in the workspace).
  const std::string exits = spawn("until [ -e go ]; do sleep 0.1; done; echo bye; exit 7");
  const std::string signals = spawn("until [ -e go ]; do sleep 0.1; done; kill -USR1 $$");
  const std::string term = spawn("read x; stty size; echo \"in:$x\"", /*pty=*/true);
  for (const auto& id : {printer, reader, exits, signals, term}) ASSERT_FALSE(id.empty());
  const std::set<std::string> want = {
      printer + ".pidfd", printer + ".status", printer + ".in", printer + ".out", printer + ".err",
      reader + ".pidfd",  reader + ".status",  reader + ".in",  reader + ".out",  reader + ".err",
      exits + ".pidfd",   exits + ".status",   exits + ".in",   exits + ".out",   exits + ".err",
      signals + ".pidfd", signals + ".status", signals + ".in", signals + ".out", signals + ".err",
      term + ".pidfd",    term + ".status",    term + ".pty"};
  manager.ReceiveUntil([&] { return manager.StoredNames() == want; });
  ASSERT_EQ(manager.StoredNames(), want);
  const std::string one = "one\n";
  ASSERT_TRUE(c->Call(wire::StdinRequest{reader, {one.begin(), one.end()}}));

  // SIGTERM: the supervisor stops alone; the sessions run on, and two of them end meanwhile.
  const int status = daemon.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << Daemon::Log();
  manager.ReceiveUntil([&] { return manager.Said("STOPPING=1"); }, 2000);
  EXPECT_TRUE(manager.removals.empty()) << "a stopping supervisor emptied the store";
  WriteFile(kWorkspace + "/go", "");
  for (const auto& id : {exits, signals}) {
    EXPECT_TRUE(WaitFor(
        [&] { return LeafProcesses(kLeaves + "/" + id).value_or(std::vector<pid_t>{1}).empty(); },
        std::chrono::seconds(30)))
        << id << " did not end while the supervisor was down";
  }
  ::usleep(1000 * 1000);  // the printer fills its pipe meanwhile

  // The next start gets the fds back and re-adopts every session.
  manager.messages.clear();
  const uint64_t restart_ms =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  ASSERT_TRUE(manager.Said("READY=1")) << Daemon::Log();
  auto c2 = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c2) << Daemon::Log();
  for (const auto& m : manager.messages) {
    EXPECT_FALSE(m.starts_with("FDSTORE=1\n")) << "stored again: " << m;
  }
  for (const auto& id : {printer, reader, term}) {
    auto info = Get(*c2, id);
    ASSERT_TRUE(info) << id << Daemon::Log();
    EXPECT_FALSE(info->end) << id << ": " << info->end->detail << Daemon::Log();
    EXPECT_EQ(info->supervisor_restarts, 1u) << id;
  }

  // Ended while no supervisor ran: the exact status from init's report.
  auto ex = WaitEnded(*c2, exits);
  ASSERT_TRUE(ex && ex->end) << Daemon::Log();
  EXPECT_EQ(ex->end->reason, wire::EndReason::kExit) << ex->end->detail;
  EXPECT_EQ(ex->end->exit_code, 7);
  EXPECT_TRUE(ex->end->cpu_usage_usec.has_value());
  EXPECT_TRUE(ex->end->pids_peak.has_value());
  EXPECT_LT(ex->end->ended_at_ms, restart_ms) << "endedAt is not the command's end";
  EXPECT_EQ(ReadAll(*c2, exits), "bye\n");
  auto sig = WaitEnded(*c2, signals);
  ASSERT_TRUE(sig && sig->end) << Daemon::Log();
  EXPECT_EQ(sig->end->signal, SIGUSR1) << sig->end->detail;
  EXPECT_FALSE(sig->end->exit_code.has_value());

  // stdin after the restart, then end of file (the store's copy of stdin is released).
  const std::string two = "two\n";
  ASSERT_TRUE(c2->Call(wire::StdinRequest{reader, {two.begin(), two.end()}}));
  ASSERT_TRUE(c2->Call(wire::CloseStdinRequest{reader}));
  // The command reads end of file once systemd (here: the test) has closed its copy too.
  manager.ReceiveUntil([&] { return !manager.StoredNames().contains(reader + ".in"); }, 5000);
  EXPECT_EQ(manager.removals[reader + ".in"], 1);
  auto rd = WaitEnded(*c2, reader);
  manager.Drain();
  ASSERT_TRUE(rd && rd->end) << Daemon::Log();
  EXPECT_EQ(rd->end->exit_code, 3);
  EXPECT_EQ(ReadAll(*c2, reader), "got one\ngot two\neof\n");

  // The terminal: resize and input through the adopted PTY master.
  auto resized = c2->Call(wire::ResizeRequest{term, {50, 120}});
  ASSERT_TRUE(resized && resized->ok());
  const std::string typed = "typed\n";
  ASSERT_TRUE(c2->Call(wire::StdinRequest{term, {typed.begin(), typed.end()}}));
  auto tm = WaitEnded(*c2, term);
  manager.Drain();
  ASSERT_TRUE(tm && tm->end) << Daemon::Log();
  const std::string tty = ReadAll(*c2, term);
  EXPECT_NE(tty.find("50 120"), std::string::npos) << tty;
  EXPECT_NE(tty.find("in:typed"), std::string::npos) << tty;

  // The printer's output: every byte, in order, across the restart.
  auto pr = WaitEnded(*c2, printer);
  ASSERT_TRUE(pr && pr->end) << Daemon::Log();
  EXPECT_EQ(pr->end->exit_code, 0) << pr->end->detail;
  const std::string printed = ReadAll(*c2, printer);
  const std::string expected = PrinterOutput();
  EXPECT_EQ(printed.size(), expected.size());
  EXPECT_TRUE(printed == expected) << "the output differs from the sequence printed";
  EXPECT_EQ(pr->output_bytes, expected.size());

  // Nothing left: no leaf, nothing in the store.
  EXPECT_TRUE(WaitFor([] { return LeafCount() == 0; }, std::chrono::seconds(30)));
  manager.ReceiveUntil([&] { return manager.store.empty(); }, 5000);
  EXPECT_TRUE(manager.store.empty())
      << "left in the store: " << ::testing::PrintToString(manager.StoredNames());
  EXPECT_NE(Daemon::Log().find("re-adopted 5 running sessions, 0 could not be"), std::string::npos)
      << Daemon::Log();
  auto health = c2->Call(wire::HealthRequest{});
  ASSERT_TRUE(health && health->ok());
  EXPECT_EQ(std::get<wire::HealthInfo>(health->body).sessions_readopted, 5u);
  EXPECT_EQ(std::get<wire::HealthInfo>(health->body).readoption_failures, 0u);
}

// An adoption record of another format (a downgrade, or an upgrade that changed it): the
// session is ended cleanly, its process and leaf gone, its fds released from the store.
TEST(FdStoreTest, ARecordOfAnotherFormatEndsTheSessionCleanly) {
  Daemon daemon("");  // first: it empties the test's directory, where the notify socket goes
  FakeManager manager(kNotify);
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
  const std::string id = SpawnSleeper(*c, "1601");
  ASSERT_FALSE(id.empty());
  manager.ReceiveUntil([&] { return manager.store.size() == 5; });
  ASSERT_EQ(manager.store.size(), 5u);
  ASSERT_TRUE(WaitFor([&] { return Sleepers(id, "1601") == 1; }, std::chrono::seconds(30)));
  daemon.Stop(SIGTERM);
  manager.messages.clear();
  const std::string adopt = kBase + "/state/sessions/" + id + "/adopt.json";
  std::string record = Slurp(adopt);
  const size_t at = record.find("\"format\":1");
  ASSERT_NE(at, std::string::npos) << record;
  record.replace(at, 10, "\"format\":999");
  WriteFile(adopt, record);

  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  for (const auto& name : {id + ".pidfd", id + ".status", id + ".in", id + ".out", id + ".err"}) {
    EXPECT_EQ(manager.removals[name], 1) << name << " not removed from the store once";
  }
  EXPECT_TRUE(manager.store.empty());
  auto c2 = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c2) << Daemon::Log();
  auto info = Get(*c2, id);
  ASSERT_TRUE(info && info->end) << Daemon::Log();
  EXPECT_EQ(info->end->reason, wire::EndReason::kSupervisorRestart);
  EXPECT_NE(info->end->detail.find("format 999"), std::string::npos) << info->end->detail;
  EXPECT_TRUE(WaitFor([&] { return Sleepers(id, "1601") == 0; }, std::chrono::seconds(30)));
  struct stat st {};
  EXPECT_NE(::stat((kLeaves + "/" + id).c_str(), &st), 0) << "the session's leaf is left";
  EXPECT_NE(Daemon::Log().find("re-adopted 0 running sessions, 1 could not be"), std::string::npos)
      << Daemon::Log();
  auto health = c2->Call(wire::HealthRequest{});
  ASSERT_TRUE(health && health->ok());
  EXPECT_EQ(std::get<wire::HealthInfo>(health->body).readoption_failures, 1u);
}

// systemd < 254 empties the store on `systemctl stop`: the session can never be adopted and
// ends by itself (its init leaves once nobody holds the report socket).
TEST(FdStoreTest, ASessionEndsWhenTheStoreIsEmptiedWhileNoSupervisorRuns) {
  Daemon daemon("");  // first: it empties the test's directory, where the notify socket goes
  FakeManager manager(kNotify);
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
  FakeManager manager(kNotify);
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
