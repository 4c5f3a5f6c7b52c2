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
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "control_client.h"
#include "fake_manager.h"
#include "proc_watch.h"
#include "supervisor/output_stage.h"

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
  "env": {"set": {"PATH": "/usr/bin:/bin"}},
  "output": {"max_rate_bytes_per_second": 0, "transcript_max_bytes": 536870912}
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
    const size_t fds = pty ? 5 : 6;  // and the output stage; a terminal also its queue
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
      printer + ".pidfd", printer + ".status", printer + ".in",    printer + ".out",
      printer + ".err",   printer + ".stage",  reader + ".pidfd",  reader + ".status",
      reader + ".in",     reader + ".out",     reader + ".err",    reader + ".stage",
      exits + ".pidfd",   exits + ".status",   exits + ".in",      exits + ".out",
      exits + ".err",     exits + ".stage",    signals + ".pidfd", signals + ".status",
      signals + ".in",    signals + ".out",    signals + ".err",   signals + ".stage",
      term + ".pidfd",    term + ".status",    term + ".pty",      term + ".stage",
      term + ".ptyq"};
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
  manager.ReceiveUntil([&] { return manager.store.size() == 6; });
  ASSERT_EQ(manager.store.size(), 6u);
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
  for (const auto& name :
       {id + ".pidfd", id + ".status", id + ".in", id + ".out", id + ".err", id + ".stage"}) {
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
  manager.ReceiveUntil([&] { return manager.store.size() == 6; });
  ASSERT_EQ(manager.store.size(), 6u);
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

// --- Exactly-once output across kill -9 -----------------------------------------------------

// The output of a session, gaps skipped (counted in *gap_bytes).
std::string ReadSkippingGaps(ControlClient& c, const std::string& id, uint64_t* gap_bytes) {
  std::string out;
  uint64_t since = 0;
  *gap_bytes = 0;
  for (;;) {
    auto r =
        c.Call(wire::ReadOutputRequest{id, since, static_cast<uint32_t>(wire::kMaxChunkBytes)});
    auto* o = r ? std::get_if<wire::OutputRead>(&r->body) : nullptr;
    if (o == nullptr) {
      ADD_FAILURE() << "read_output " << id << " at " << since << " failed";
      return out;
    }
    for (const auto& g : o->gaps) *gap_bytes += g.to - g.from;
    out.append(o->data.begin(), o->data.end());
    if (o->next == since) return out;
    since = o->next;
  }
}

// "1\n" … "n\n": its length.
uint64_t CounterBytes(uint64_t n) {
  uint64_t bytes = 0;
  for (uint64_t digits = 1, low = 1; low <= n; ++digits, low *= 10) {
    bytes += (std::min(n, low * 10 - 1) - low + 1) * (digits + 1);
  }
  return bytes;
}

// How `out` departs from seq 1 inf's output ("1\n2\n…", the last line possibly cut short).
struct CounterCheck {
  size_t first_break = std::string::npos;  // where the first wrong line starts
  int breaks = 0;                          // wrong lines (each a hole, a repeat, a torn line)
  uint64_t last = 0;                       // the last whole line's number
  int64_t missing = 0;                     // bytes the sequence up to `last` has that out lacks
};
CounterCheck CheckCounter(const std::string& out) {
  CounterCheck c;
  uint64_t want = 1;
  size_t pos = 0, whole = 0;
  while (pos < out.size()) {
    const std::string w = std::to_string(want);
    const size_t nl = out.find('\n', pos);
    if (nl == std::string::npos) {  // the write the kill cut short: a prefix of the number
      if (out.compare(pos, std::string::npos, w, 0, out.size() - pos) != 0) {
        if (c.breaks++ == 0) c.first_break = pos;
      }
      break;
    }
    if (out.compare(pos, nl - pos, w) != 0) {
      if (c.breaks++ == 0) c.first_break = pos;
      // Resynchronise on the next whole line.
      const size_t next = out.find('\n', nl + 1);
      if (next == std::string::npos) break;
      want = std::strtoull(out.c_str() + nl + 1, nullptr, 10) + 1;
      pos = whole = next + 1;
      continue;
    }
    ++want;
    pos = whole = nl + 1;
  }
  c.last = want - 1;
  c.missing = static_cast<int64_t>(CounterBytes(c.last)) - static_cast<int64_t>(whole);
  return c;
}

struct KillRun {
  int kills = 0;
  std::string output;
  uint64_t gap_bytes = 0;
  uint64_t output_bytes = 0;  // the session's outputBytes at its end
  std::string log;
};

// A session printing `seq 1 inf` as fast as it can through its stdout pipe (or its terminal,
// `pty`, with output post-processing off so that the bytes are the sequence's); `kills` times
// the supervisor is SIGKILLed at a random moment 0-2 ms after it said READY=1 (when it drains
// what the writer filled the pipe or the terminal with meanwhile, then keeps pace with it),
// and started again with the stored fds. Then the session is killed and its whole output read.
KillRun KillWhileCounting(bool staging, int kills, bool pty = false) {
  KillRun run;
  if (staging) {
    ::unsetenv("MONKEYPROOFD_TEST_NO_OUTPUT_STAGING");
  } else {
    ::setenv("MONKEYPROOFD_TEST_NO_OUTPUT_STAGING", "1", 1);
  }
  Daemon daemon("");  // first: it empties the test's directory, where the notify socket goes
  FakeManager manager(kNotify);
  const auto start = [&] {
    manager.messages.clear();
    daemon.Start(manager);
    manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
    return manager.Said("READY=1");
  };
  if (!start()) {
    ADD_FAILURE() << Daemon::Log();
    return run;
  }
  std::optional<std::string> id;
  {
    auto c = ControlClient::Connect(daemon.socket());
    if (!c) {
      ADD_FAILURE() << c.error().ToString() << Daemon::Log();
      return run;
    }
    id = pty ? SpawnTask(*c, "stty -opost; exec seq 1 inf", /*pty=*/true).id
             : SpawnTask(*c, "exec seq 1 inf").id;
  }
  // pidfd, status, in, out, err (a terminal: pidfd, status, pty), and the stage (and queue).
  const size_t fds = pty ? (staging ? 5 : 3) : (staging ? 6 : 5);
  manager.ReceiveUntil([&] { return manager.store.size() == fds; });
  EXPECT_EQ(manager.store.size(), fds) << ::testing::PrintToString(manager.StoredNames());
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> delay_us(0, 2000);
  for (run.kills = 0; run.kills < kills; ++run.kills) {
    ::usleep(static_cast<useconds_t>(delay_us(rng)));
    daemon.Stop(SIGKILL);
    if (!start()) {
      ADD_FAILURE() << "kill " << run.kills + 1 << Daemon::Log();
      return run;
    }
  }
  ::unsetenv("MONKEYPROOFD_TEST_NO_OUTPUT_STAGING");
  auto c = ControlClient::Connect(daemon.socket());
  if (!c) {
    ADD_FAILURE() << Daemon::Log();
    return run;
  }
  auto killed = c->Call(wire::KillRequest{*id});
  EXPECT_TRUE(killed && killed->ok());
  auto info = WaitEnded(*c, *id);
  manager.Drain();
  EXPECT_TRUE(info && info->end) << Daemon::Log();
  if (info && info->end) {
    EXPECT_EQ(info->supervisor_restarts, static_cast<uint32_t>(kills));
    run.output_bytes = info->output_bytes;
  }
  run.output = ReadSkippingGaps(*c, *id, &run.gap_bytes);
  run.log = Daemon::Log();
  return run;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// What a run with staging must show: the transcript is exactly the sequence printed, no byte
// lost, none repeated; and kills did land while a chunk was on its way (else the run proved
// nothing). `queued`: the journal lines of chunks a terminal's queue held, for the record.
void ExpectExactlyOnce(const KillRun& run, const char* label, uint64_t min_lines) {
  ASSERT_EQ(run.kills, 30);
  const CounterCheck check = CheckCounter(run.output);
  const size_t finished = Count(run.log, "to the transcript"),
               written = Count(run.log, "were in the transcript already"),
               queued = Count(run.log, "bytes the PTY queue held went to the transcript");
  std::cout << "[ " << label << " ] " << run.kills << " kills, " << run.output.size() << " bytes, "
            << check.last << " lines; chunks finished by the next supervisor: " << finished << " ("
            << queued << " from a PTY queue), found already written: " << written << "\n";
  EXPECT_EQ(run.gap_bytes, 0u);
  EXPECT_EQ(check.breaks, 0) << "first wrong line at byte " << check.first_break << ": \""
                             << run.output.substr(check.first_break, 40) << "\"";
  EXPECT_EQ(check.missing, 0);
  EXPECT_EQ(run.output_bytes, run.output.size());
  EXPECT_GT(check.last, min_lines) << "the writer was not fast";
  EXPECT_GT(finished + written, 0u) << "no kill landed while a chunk was on its way";
  EXPECT_EQ(Count(run.log, "not written: the transcript holds"), 0u) << run.log;
  EXPECT_EQ(Count(run.log, "output staging stopped"), 0u) << run.log;
}

// What its control (staging off: read, then append) must show: a kill between the read and the
// append takes a chunk with it.
void ExpectLoss(const KillRun& run, const char* label) {
  ASSERT_EQ(run.kills, 30);
  const CounterCheck check = CheckCounter(run.output);
  std::cout << "[ " << label << " ] " << run.kills << " kills, " << run.output.size() << " bytes, "
            << check.last << " lines; " << check.breaks << " breaks, " << check.missing
            << " bytes missing, " << run.gap_bytes << " bytes of gaps\n";
  EXPECT_GT(check.breaks, 0) << "the control lost nothing: the test cannot see loss";
  EXPECT_GT(check.missing + static_cast<int64_t>(run.gap_bytes), 0);
}

TEST(FdStoreTest, OutputIsExactlyOnceAcrossThirtyKillsOfAFastWriter) {
  ExpectExactlyOnce(KillWhileCounting(/*staging=*/true, 30), "staging", 100000);
}

TEST(FdStoreTest, ControlWithoutStagingKillsLoseOutput) {
  ExpectLoss(KillWhileCounting(/*staging=*/false, 30), "control");
}

// The same for a terminal: its chunks go master -> queue -> stage -> log. A terminal is
// slower than a pipe, hence fewer lines.
TEST(FdStoreTest, TerminalOutputIsExactlyOnceAcrossThirtyKills) {
  ExpectExactlyOnce(KillWhileCounting(/*staging=*/true, 30, /*pty=*/true), "terminal", 10000);
}

TEST(FdStoreTest, ControlWithoutStagingKillsLoseTerminalOutput) {
  ExpectLoss(KillWhileCounting(/*staging=*/false, 30, /*pty=*/true), "terminal control");
}

// A refused session still keeps every byte it wrote: the chunk a killed supervisor left in the
// stage and what its pipe filled with while no supervisor ran go to its transcript first, in
// order, whatever refused it: a record of another format (refused before any fd is looked at),
// or a missing stderr pipe (refused after the others were taken up).
enum class Refusal { kFormat, kMissingFd };
void RefusedSessionKeepsItsOutput(Refusal refusal) {
  Daemon daemon("");  // first: it empties the test's directory, where the notify socket goes
  FakeManager manager(kNotify);
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
  const std::string id =
      SpawnTask(*c,
                "echo before; until [ -e go ]; do sleep 0.1; done; seq 1 20000; exec sleep 1000")
          .id;
  ASSERT_FALSE(id.empty());
  manager.ReceiveUntil([&] { return manager.store.size() == 6; });
  ASSERT_EQ(manager.store.size(), 6u);
  ASSERT_TRUE(WaitFor([&] { return ReadAll(*c, id) == "before\n"; }, std::chrono::seconds(30)));
  daemon.Stop(SIGTERM);
  manager.messages.clear();
  auto stored = [&](const std::string& kind) {
    for (const auto& [name, fd] : manager.store) {
      if (name == id + "." + kind) return fd.get();
    }
    return -1;
  };
  const int out = stored("out"), stage_fd = stored("stage");
  ASSERT_GE(out, 0);
  ASSERT_GE(stage_fd, 0);
  // The whole sequence waits in the pipe (1 MiB).
  WriteFile(kWorkspace + "/go", "");
  const int want = static_cast<int>(CounterBytes(20000));
  int queued = 0;
  EXPECT_TRUE(WaitFor([&] { return ::ioctl(out, FIONREAD, &queued) == 0 && queued == want; },
                      std::chrono::seconds(30)))
      << queued << " of " << want << " bytes in the pipe";
  // As a supervisor killed between its splice and its append leaves it: 1000 bytes moved from
  // the pipe into the stage, for offset 7 (after "before\n").
  auto stage = supervisor::OutputStage::Adopt(UniqueFd(::dup(stage_fd)));
  ASSERT_TRUE(stage) << stage.error().ToString();
  uint8_t buf[1000];
  auto staged = stage->Take(out, wire::OutputStream::kStdout, 7, buf, sizeof buf);
  ASSERT_TRUE(staged && *staged == sizeof buf) << (staged ? "short" : staged.error().ToString());
  if (refusal == Refusal::kFormat) {
    const std::string adopt = kBase + "/state/sessions/" + id + "/adopt.json";
    std::string record = Slurp(adopt);
    const size_t at = record.find("\"format\":1");
    ASSERT_NE(at, std::string::npos) << record;
    record.replace(at, 10, "\"format\":999");
    WriteFile(adopt, record);
  } else {
    std::erase_if(manager.store, [&](const auto& entry) { return entry.first == id + ".err"; });
  }

  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  auto c2 = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c2) << Daemon::Log();
  auto info = Get(*c2, id);
  ASSERT_TRUE(info && info->end) << Daemon::Log();
  EXPECT_EQ(info->end->reason, wire::EndReason::kSupervisorRestart);
  std::string expected = "before\n";
  for (int i = 1; i <= 20000; ++i) expected += std::to_string(i) + "\n";
  const std::string got = ReadAll(*c2, id);
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected) << "the transcript is not \"before\" and the sequence";
  EXPECT_EQ(info->output_bytes, expected.size());
  EXPECT_NE(Daemon::Log().find("bytes of output it wrote while no supervisor ran went to its "
                               "transcript"),
            std::string::npos)
      << Daemon::Log();
  struct stat st {};
  EXPECT_NE(::stat((kLeaves + "/" + id).c_str(), &st), 0) << "the session's leaf is left";
  manager.ReceiveUntil([&] { return manager.store.empty(); }, 5000);
  EXPECT_TRUE(manager.store.empty())
      << "left in the store: " << ::testing::PrintToString(manager.StoredNames());
}

TEST(FdStoreTest, ASessionRefusedForItsFormatKeepsTheOutputItWroteMeanwhile) {
  RefusedSessionKeepsItsOutput(Refusal::kFormat);
}

TEST(FdStoreTest, ASessionRefusedForAMissingFdKeepsTheOutputItWroteMeanwhile) {
  RefusedSessionKeepsItsOutput(Refusal::kMissingFd);
}

// Output that piled up while no supervisor ran is not a flood: a session printing at half its
// ceiling (on_flood "kill", 16 KiB/s in windows of 1 s) is not killed when the next supervisor
// reads five seconds of it at once, and ends by itself with all its output.
TEST(FdStoreTest, TheBacklogReadAtReadoptionIsNotAFlood) {
  Daemon daemon("");  // first: it empties the test's directory, where the notify socket goes
  WriteFile(kBase + "/policies/flood.json", R"({
  "description": "test flood kill", "type": "exec", "command": [],
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-fdstore-test/ws"],
  "default_workspace": "/var/tmp/mp-fdstore-test/ws/w",
  "env": {"set": {"PATH": "/usr/bin:/bin"}},
  "output": {"max_rate_bytes_per_second": 16384, "max_rate_window_seconds": 1,
             "on_flood": "kill"}
})");
  FakeManager manager(kNotify);
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
  wire::SpawnRequest req;
  req.task = "for i in $(seq 1 10); do head -c 8000 /dev/zero | tr '\\0' a; echo; sleep 1; done";
  req.client = "test";
  req.preset = "flood";
  auto r = c->Call(req);
  ASSERT_TRUE(r && r->ok()) << Daemon::Log();
  const std::string id = std::get<wire::SessionInfo>(r->body).id;
  manager.ReceiveUntil([&] { return manager.store.size() == 6; });
  ::sleep(2);
  daemon.Stop(SIGTERM);
  ::sleep(5);  // about 40 KB meanwhile: more than a window allows, at half the rate
  manager.messages.clear();
  daemon.Start(manager);
  manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
  auto c2 = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c2) << Daemon::Log();
  auto info = WaitEnded(*c2, id);
  ASSERT_TRUE(info && info->end) << Daemon::Log();
  EXPECT_EQ(info->end->reason, wire::EndReason::kExit) << info->end->detail;
  EXPECT_EQ(info->end->exit_code, 0);
  EXPECT_EQ(info->output_bytes, 10u * 8001u);
  EXPECT_EQ(info->supervisor_restarts, 1u);
}

}  // namespace
}  // namespace mp::testing
