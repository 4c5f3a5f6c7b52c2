// monkeyproofd end to end in the test VM: a real daemon process, its control
// socket, sessions of every type, the watchdog, stdin, PTY resize, recovery.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "control_client.h"
#include "fake_manager.h"
#include "proc_watch.h"
#include "staged_probe.h"

namespace mp::testing {
namespace {

const std::string kDaemon = MP_MONKEYPROOFD_PATH;
const std::string kBase = "/var/tmp/mp-daemon-test";
// The workspace root, and the sessions' workspace below it (a root itself is refused as cwd).
const std::string kRoot = kBase + "/ws";
const std::string kWorkspace = kRoot + "/w";
const std::string kCgroup = "/sys/fs/cgroup/mp-daemon-test";
// The cgroup the daemon makes below its root for the session leaves (sandbox::kSessionsCgroup).
const std::string kLeaves = kCgroup + "/sessions";

const char kExecPolicy[] = R"({
  "description": "test exec", "type": "exec", "command": [],
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-daemon-test/ws"],
  "default_workspace": "/var/tmp/mp-daemon-test/ws/w",
  "limits": {"memory_max_bytes": 268435456, "pids_max": 128},
  "deadlines": {"wall_seconds": 900, "idle_seconds": 600},
  "output": {"ring_bytes": 65536, "transcript_max_bytes": 8388608,
             "max_rate_bytes_per_second": 4194304, "max_rate_window_seconds": 2,
             "on_flood": "kill"},
  "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}}
})";

// A one-shot "agent": the preset's command with the task appended last.
const char kPrintPolicy[] = R"({
  "description": "test print", "type": "print",
  "command": ["/bin/echo", "printed:"], "bypasses_agent_permissions": false,
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-daemon-test/ws"],
  "default_workspace": "/var/tmp/mp-daemon-test/ws/w",
  "env": {"set": {"PATH": "/usr/bin:/bin"}}
})";

// No output-rate ceiling and a transcript that holds a whole 1 GiB stream.
const char kBulkPolicy[] = R"({
  "description": "test bulk output", "type": "exec", "command": [],
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-daemon-test/ws"],
  "default_workspace": "/var/tmp/mp-daemon-test/ws/w",
  "output": {"ring_bytes": 1048576, "transcript_max_bytes": 1200000000,
             "max_rate_bytes_per_second": 0},
  "env": {"set": {"PATH": "/usr/bin:/bin"}}
})";

const char kShellPolicy[] = R"({
  "description": "test interactive shell", "type": "interactive",
  "command": ["/bin/sh", "-c"], "bypasses_agent_permissions": false,
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-daemon-test/ws"],
  "default_workspace": "/var/tmp/mp-daemon-test/ws/w",
  "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TERM": "dumb"}}
})";

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Polls `get` until the session has an end record; false after the (generous) hang guard.
bool WaitEnded(ControlClient& c, const std::string& id) {
  return WaitFor(
      [&] {
        auto got = c.Call(wire::GetRequest{id});
        auto* info = got ? std::get_if<wire::SessionInfo>(&got->body) : nullptr;
        return info != nullptr && info->end.has_value();
      },
      std::chrono::seconds(120));
}

class Daemon {
 public:
  Daemon() {
    if (std::system(("rm -rf " + kBase).c_str()) != 0) ADD_FAILURE() << "rm -rf " << kBase;
    ::mkdir(kBase.c_str(), 0755);
    ::mkdir(kRoot.c_str(), 0755);
    ::mkdir(kWorkspace.c_str(), 0777);
    ::chmod(kWorkspace.c_str(), 0777);
    ::mkdir((kBase + "/policies").c_str(), 0755);
    WriteFile(kBase + "/policies/exec.json", kExecPolicy);
    WriteFile(kBase + "/policies/shell.json", kShellPolicy);
    WriteFile(kBase + "/policies/bulk.json", kBulkPolicy);
    WriteFile(kBase + "/policies/printer.json", kPrintPolicy);
    WriteFile(kBase + "/monkeyproof.conf",
              "kill_grace_ms = 500\nmax_sessions = 250\napi_user = root\n");
  }
  ~Daemon() { Stop(SIGKILL); }

  // With `manager`, the daemon runs as under systemd with its fd store (fake_manager.h).
  void Start(const FakeManager* manager = nullptr) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string log = kBase + "/daemon.log";
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 2);
      if (manager != nullptr) manager->PassToChild();
      ::execl(kDaemon.c_str(), kDaemon.c_str(), "--config", (kBase + "/monkeyproof.conf").c_str(),
              "--state-dir", (kBase + "/state").c_str(), "--socket",
              (kBase + "/run/control.sock").c_str(), "--cgroup-root", kCgroup.c_str(), "--policies",
              (kBase + "/policies").c_str(), "--audit-log", (kBase + "/audit.log").c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  void Stop(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::string socket() const { return kBase + "/run/control.sock"; }
  pid_t pid() const { return pid_; }
  static std::string Log() {
    std::ifstream f(kBase + "/daemon.log");
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }

 private:
  pid_t pid_ = -1;
};

class SupervisorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new Daemon();
    daemon_->Start();
  }
  static void TearDownTestSuite() {
    daemon_->Stop(SIGTERM);
    delete daemon_;
  }
  void SetUp() override {
    auto c = ControlClient::Connect(daemon_->socket());
    ASSERT_TRUE(c) << c.error().ToString() << "\n" << Daemon::Log();
    client_.emplace(std::move(*c));
  }

  wire::SessionInfo Spawn(wire::SpawnRequest req) {
    if (req.client.empty()) req.client = "test";
    auto r = client_->Call(req);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r) return {};
    auto* info = std::get_if<wire::SessionInfo>(&r->body);
    if (info == nullptr) {
      auto* err = std::get_if<wire::ErrorBody>(&r->body);
      ADD_FAILURE() << "spawn failed: " << (err ? err->message : "unexpected body");
      return {};
    }
    return *info;
  }
  wire::SpawnRequest Exec(const std::string& task) {
    wire::SpawnRequest r;
    r.task = task;
    return r;
  }

  // Subscribes from `since` and collects output until the exit event. Offsets must follow on
  // from each other; a `gap` (bytes past the transcript cap, which a flood reaches when a
  // loaded host lets it print on before the kill) is part of the sequence: it must start where
  // the output stopped, and the output goes on where it ends.
  struct Collected {
    std::string out;
    std::optional<wire::EndRecord> end;
    uint64_t next_offset = 0;
    bool offsets_contiguous = true;
    uint64_t gap_bytes = 0;
  };
  Collected Follow(const std::string& id, uint64_t since = 0,
                   std::function<void(const uint8_t*, size_t)> sink = nullptr) {
    Collected c;
    c.next_offset = since;
    auto ack = client_->Call(wire::SubscribeRequest{id, since});
    EXPECT_TRUE(ack && ack->ok()) << (ack ? "error response" : ack.error().ToString());
    for (;;) {
      auto ev = client_->NextEvent(std::chrono::seconds(120));
      if (!ev) {
        ADD_FAILURE() << ev.error().ToString();
        return c;
      }
      if (auto* g = std::get_if<wire::GapEvent>(&*ev)) {
        if (g->session != id) continue;
        if (g->range.from != c.next_offset) c.offsets_contiguous = false;
        c.gap_bytes += g->range.to - g->range.from;
        c.next_offset = g->range.to;
      } else if (auto* o = std::get_if<wire::OutputEvent>(&*ev)) {
        if (o->session != id) continue;
        if (o->offset != c.next_offset) c.offsets_contiguous = false;
        if (sink)
          sink(o->data.data(), o->data.size());
        else
          c.out.append(o->data.begin(), o->data.end());
        c.next_offset = o->offset + o->data.size();
      } else if (auto* x = std::get_if<wire::ExitEvent>(&*ev)) {
        if (x->session != id) continue;
        c.end = x->end;
        return c;
      }
    }
  }

  static Daemon* daemon_;
  std::optional<ControlClient> client_;
};
Daemon* SupervisorTest::daemon_ = nullptr;

TEST_F(SupervisorTest, ExecLifecycleWithOffsetsAndExitRecord) {
  auto info = Spawn(Exec("echo hello; echo oops >&2; exit 3"));
  ASSERT_FALSE(info.id.empty());
  EXPECT_EQ(info.state, wire::SessionState::kRunning);
  auto c = Follow(info.id);
  EXPECT_TRUE(c.offsets_contiguous);
  EXPECT_NE(c.out.find("hello\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("oops\n"), std::string::npos) << c.out;
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->reason, wire::EndReason::kExit);
  EXPECT_EQ(c.end->exit_code, 3);
  EXPECT_TRUE(c.end->memory_peak_bytes.has_value());
  auto got = client_->Call(wire::GetRequest{info.id});
  ASSERT_TRUE(got);
  auto* detail = std::get_if<wire::SessionInfo>(&got->body);
  ASSERT_NE(detail, nullptr);
  EXPECT_EQ(detail->state, wire::SessionState::kExited);
  EXPECT_EQ(detail->output_bytes, c.out.size());
  // Read the whole output back from offset 0 after exit.
  auto read = client_->Call(wire::ReadOutputRequest{info.id, 0, 60000});
  ASSERT_TRUE(read);
  auto* r = std::get_if<wire::OutputRead>(&read->body);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(std::string(r->data.begin(), r->data.end()), c.out);
  EXPECT_TRUE(r->ended);
}

TEST_F(SupervisorTest, PrintSessionRunsThePresetWithTheTaskLast) {
  wire::SpawnRequest req;
  req.type = wire::SessionType::kPrint;
  req.preset = "printer";
  req.task = "hello from a print session";
  auto info = Spawn(req);
  ASSERT_FALSE(info.id.empty());
  EXPECT_EQ(info.command, "/bin/echo printed: hello from a print session");
  auto c = Follow(info.id);
  EXPECT_EQ(c.out, "printed: hello from a print session\n");
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->reason, wire::EndReason::kExit);
  // A print session needs a preset of its type.
  wire::SpawnRequest wrong;
  wrong.type = wire::SessionType::kPrint;
  wrong.preset = "exec";
  wrong.task = "x";
  wrong.client = "test";
  auto r = client_->Call(wrong);
  ASSERT_TRUE(r) << r.error().ToString();
  auto* err = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(err, nullptr) << "an exec preset for a print session must be refused";
  EXPECT_EQ(err->code, wire::ErrorCode::kBadRequest) << err->message;
  EXPECT_EQ(err->field, "/session_type") << err->message;
  EXPECT_NE(err->message.find("\"exec\""), std::string::npos) << err->message;
}

TEST_F(SupervisorTest, StdinReachesExecSessions) {
  auto info = Spawn(Exec("read line; echo \"got:$line\""));
  ASSERT_FALSE(info.id.empty());
  std::string text = "hi there\n";
  auto sent = client_->Call(wire::StdinRequest{info.id, {text.begin(), text.end()}});
  ASSERT_TRUE(sent && sent->ok());
  auto c = Follow(info.id);
  EXPECT_EQ(c.out, "got:hi there\n");
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->exit_code, 0);
}

TEST_F(SupervisorTest, CloseStdinEndsACat) {
  auto info = Spawn(Exec("cat; echo done"));
  std::string text = "abc";
  ASSERT_TRUE(client_->Call(wire::StdinRequest{info.id, {text.begin(), text.end()}}));
  ASSERT_TRUE(client_->Call(wire::CloseStdinRequest{info.id}));
  auto c = Follow(info.id);
  EXPECT_EQ(c.out, "abcdone\n");
}

TEST_F(SupervisorTest, KillEndsTheWholeTree) {
  // A tree that leaves the shell's reach: `sleep 1001` in a session of its own (setsid), and
  // `sleep 1002` double-forked (its parent shell exits, so it is reparented). `sleep 1003` stays
  // the shell's child. Distinct arguments make each one findable in the leaf.
  auto info =
      Spawn(Exec("setsid sh -c 'sleep 1001' & sh -c 'sleep 1002 &'; echo started; sleep 1003"));
  ASSERT_FALSE(info.id.empty());
  const std::string leaf = kLeaves + "/" + info.id;
  // Kill only once the whole tree exists: the three sleepers are in the leaf and the
  // double fork's middle shell is gone.
  std::vector<pid_t> procs;
  const bool tree = WaitFor(
      [&] {
        procs = LeafProcesses(leaf).value_or(std::vector<pid_t>{});
        return FindByCmdline(procs, "sleep 1001") && FindByCmdline(procs, "sleep 1002") &&
               FindByCmdline(procs, "sleep 1003") && !FindByCmdline(procs, "sh -c sleep 1002 &");
      },
      std::chrono::seconds(60));
  std::string listing;
  for (pid_t p : procs) listing += "\n  " + std::to_string(p) + " " + Cmdline(p);
  ASSERT_TRUE(tree) << "the setsid/double-fork tree never formed in " << leaf << ":" << listing;
  const auto setsid_sleep = ReadProcStat(FindByCmdline(procs, "sleep 1001"));
  const auto orphan_sleep = ReadProcStat(FindByCmdline(procs, "sleep 1002"));
  const auto shell_sleep = ReadProcStat(FindByCmdline(procs, "sleep 1003"));
  ASSERT_TRUE(setsid_sleep && orphan_sleep && shell_sleep) << listing;
  EXPECT_NE(setsid_sleep->session, shell_sleep->session) << "sleep 1001 is not in its own session";
  EXPECT_NE(Cmdline(orphan_sleep->ppid), "sh -c sleep 1002 &") << "sleep 1002 was not orphaned";
  // The shell and its three sleepers at least (the sandbox's init may be there too).
  ASSERT_GE(procs.size(), 4u) << "the leaf holds less than the whole tree:" << listing;
  // One pidfd per process, so that each one's end is seen whatever pid reuse follows.
  std::vector<UniqueFd> pidfds;
  for (pid_t p : procs) {
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, p, 0)));
    ASSERT_TRUE(fd) << "pidfd_open(" << p << ") " << std::strerror(errno);
    pidfds.push_back(std::move(fd));
  }

  auto killed = client_->Call(wire::KillRequest{info.id});
  ASSERT_TRUE(killed) << killed.error().ToString();
  ASSERT_TRUE(killed->ok()) << "kill answered with an error";
  auto c = Follow(info.id);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->reason, wire::EndReason::kKilledByRequest);
  EXPECT_NE(c.out.find("started"), std::string::npos) << c.out;
  // After: the leaf is gone (0 processes), and every process of the tree has ended.
  EXPECT_TRUE(WaitFor([&] { return !LeafProcesses(leaf); }, std::chrono::seconds(30)))
      << "the leaf is still there with "
      << LeafProcesses(leaf).value_or(std::vector<pid_t>{}).size() << " processes";
  for (size_t i = 0; i < pidfds.size(); ++i) {
    struct pollfd p {
      pidfds[i].get(), POLLIN, 0
    };
    EXPECT_EQ(::poll(&p, 1, 30000), 1) << "process " << procs[i] << " outlived the kill";
  }
}

TEST_F(SupervisorTest, WallAndIdleDeadlines) {
  auto req = Exec("sleep 100");
  req.limits = wire::SpawnLimits{};
  req.limits->wall_seconds = 1;
  auto wall = Spawn(req);
  auto c = Follow(wall.id);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->reason, wire::EndReason::kTimeoutWall);

  auto idle_req = Exec("echo once; sleep 100");
  idle_req.limits = wire::SpawnLimits{};
  idle_req.limits->idle_seconds = 2;
  auto idle = Spawn(idle_req);
  c = Follow(idle.id);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->reason, wire::EndReason::kTimeoutIdle);
  // Under emulation the shell may take longer than the deadline to print.
  EXPECT_TRUE(c.out.empty() || c.out == "once\n") << c.out;
}

TEST_F(SupervisorTest, RequestsMayTightenButNotLoosen) {
  auto req = Exec("true");
  req.client = "test";
  req.limits = wire::SpawnLimits{};
  req.limits->memory_max_bytes = 1ull << 40;
  auto r = client_->Call(req);
  ASSERT_TRUE(r);
  auto* err = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, wire::ErrorCode::kPolicyViolation) << err->message;
  EXPECT_EQ(err->field, "/limits") << err->message;
}

TEST_F(SupervisorTest, OomIsReported) {
  auto req = Exec("x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived");
  req.limits = wire::SpawnLimits{};
  req.limits->memory_max_bytes = 32ull << 20;
  auto info = Spawn(req);
  auto c = Follow(info.id);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->reason, wire::EndReason::kOom);
}

TEST_F(SupervisorTest, PidsLimitIsReported) {
  // More background sleepers than pids.max allows: the fork that fails raises pids.events.
  auto req = Exec("i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); done; wait");
  req.limits = wire::SpawnLimits{};
  req.limits->pids_max = 16;
  auto info = Spawn(req);
  auto c = Follow(info.id);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->reason, wire::EndReason::kPidsLimit) << c.out;
}

// The kill action (this test's exec policy chooses it; the default throttles, see
// output_throttle_test).
TEST_F(SupervisorTest, OutputFloodIsKilled) {
  auto info = Spawn(Exec("yes flood"));
  auto c = Follow(info.id);
  ASSERT_TRUE(c.end);
  EXPECT_EQ(c.end->reason, wire::EndReason::kOutputFlood);
  EXPECT_TRUE(c.offsets_contiguous);
  // The detail names the ceiling (4 MiB/s x 2 s of the test's exec policy) and how to raise it.
  EXPECT_NE(c.end->detail.find("more than 8388608 bytes of output within 2 s"), std::string::npos)
      << c.end->detail;
  EXPECT_NE(c.end->detail.find("output.max_rate_bytes_per_second 4194304"), std::string::npos)
      << c.end->detail;
  EXPECT_NE(c.end->detail.find("policy \"exec\""), std::string::npos) << c.end->detail;
}

// A print session with its own command needs a policy that lists print in own_command_types;
// this test's exec policy does not, so it is refused, saying what to change.
TEST_F(SupervisorTest, OwnCommandPrintIsRefusedWhereThePolicyDoesNotAllowIt) {
  wire::SpawnRequest req;
  req.type = wire::SessionType::kPrint;
  req.command = "/bin/echo";
  req.task = "x";
  req.client = "test";
  auto r = client_->Call(req);
  ASSERT_TRUE(r) << r.error().ToString();
  auto* err = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(err, nullptr) << "print with its own command under exec.json without "
                             "own_command_types must be refused";
  EXPECT_EQ(err->code, wire::ErrorCode::kPolicyViolation) << err->message;
  EXPECT_EQ(err->field, "/command") << err->message;
  EXPECT_NE(err->message.find("own_command_types"), std::string::npos) << err->message;
  // Without a command nor a preset there is nothing to run.
  req.command.reset();
  r = client_->Call(req);
  ASSERT_TRUE(r) << r.error().ToString();
  err = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, wire::ErrorCode::kBadRequest) << err->message;
  EXPECT_EQ(err->field, "/preset") << err->message;
}

TEST_F(SupervisorTest, InteractiveSessionHasAPtyThatResizes) {
  wire::SpawnRequest req;
  req.type = wire::SessionType::kInteractive;
  req.preset = "shell";
  req.task = "stty size; read x; stty size; echo \"in:$x\"";
  req.pty = wire::PtySize{30, 100};
  auto info = Spawn(req);
  ASSERT_FALSE(info.id.empty());
  ASSERT_TRUE(client_->Call(wire::SubscribeRequest{info.id, 0}));
  std::string out;
  while (out.find("30 100") == std::string::npos) {
    auto ev = client_->NextEvent(std::chrono::seconds(60));
    ASSERT_TRUE(ev) << out;
    if (auto* o = std::get_if<wire::OutputEvent>(&*ev)) {
      EXPECT_EQ(o->stream, wire::OutputStream::kPty);
      out.append(o->data.begin(), o->data.end());
    }
  }
  auto resized = client_->Call(wire::ResizeRequest{info.id, {50, 120}});
  ASSERT_TRUE(resized && resized->ok());
  std::string line = "typed\n";
  ASSERT_TRUE(client_->Call(wire::StdinRequest{info.id, {line.begin(), line.end()}}));
  for (;;) {
    auto ev = client_->NextEvent(std::chrono::seconds(60));
    ASSERT_TRUE(ev) << out;
    if (auto* o = std::get_if<wire::OutputEvent>(&*ev)) out.append(o->data.begin(), o->data.end());
    if (std::holds_alternative<wire::ExitEvent>(*ev)) break;
  }
  EXPECT_NE(out.find("50 120"), std::string::npos) << out;
  EXPECT_NE(out.find("in:typed"), std::string::npos) << out;
}

TEST_F(SupervisorTest, ResumeFromAnOffsetAfterDisconnect) {
  auto info = Spawn(Exec("for i in $(seq 1 2000); do echo line-$i; done"));
  auto all = Follow(info.id);
  ASSERT_TRUE(all.end);
  const uint64_t half = all.out.size() / 2;
  client_.reset();  // disconnect
  auto again = ControlClient::Connect(daemon_->socket());
  ASSERT_TRUE(again);
  client_.emplace(std::move(*again));
  auto rest = Follow(info.id, half);
  EXPECT_EQ(rest.out, all.out.substr(half));
}

TEST_F(SupervisorTest, UnknownSessionAndBadRequests) {
  auto r = client_->Call(wire::GetRequest{"s-doesnotexist"});
  ASSERT_TRUE(r);
  auto* err = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, wire::ErrorCode::kNotFound) << err->message;
  EXPECT_EQ(err->field, "/session") << err->message;
  auto bad = Exec("true");
  bad.client = "test";
  bad.cwd = "/etc";
  r = client_->Call(bad);
  ASSERT_TRUE(r);
  err = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(err, nullptr) << "a cwd outside the workspace roots must be refused";
  EXPECT_EQ(err->code, wire::ErrorCode::kBadRequest) << err->message;
  EXPECT_EQ(err->field, "/cwd") << err->message;
  EXPECT_NE(err->message.find("cwd \"/etc\""), std::string::npos) << err->message;
  // A copy: `err` points into `r`, which the next call replaces.
  const std::string etc_message = err->message;
  // Over the wire too, a path that exists and one that does not get the same answer (the
  // cwd's own text aside): the request learns nothing about the host outside the roots.
  bad.cwd = "/etc-mp-missing";
  r = client_->Call(bad);
  ASSERT_TRUE(r);
  const auto* missing = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(missing, nullptr);
  EXPECT_EQ(missing->code, wire::ErrorCode::kBadRequest) << missing->message;
  std::string same = missing->message;
  same.replace(same.find("/etc-mp-missing"), 15, "/etc");
  EXPECT_EQ(same, etc_message);
  // The root itself would bind every workspace under it into the session.
  bad.cwd = kRoot;
  r = client_->Call(bad);
  ASSERT_TRUE(r);
  const auto* root = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(root, nullptr) << "a workspace root as cwd must be refused";
  EXPECT_EQ(root->code, wire::ErrorCode::kBadRequest) << root->message;
  // An unknown preset names the field.
  auto unknown = Exec("true");
  unknown.client = "test";
  unknown.preset = "no-such-preset";
  r = client_->Call(unknown);
  ASSERT_TRUE(r);
  err = std::get_if<wire::ErrorBody>(&r->body);
  ASSERT_NE(err, nullptr) << "an unknown preset must be refused";
  EXPECT_EQ(err->code, wire::ErrorCode::kNotFound) << err->message;
  EXPECT_EQ(err->field, "/preset") << err->message;
}

TEST_F(SupervisorTest, ManyConcurrentSessions) {
  constexpr int kSessions = 200;
  std::vector<std::string> ids;
  for (int i = 0; i < kSessions; ++i) {
    auto info = Spawn(Exec("sleep 600"));
    ASSERT_FALSE(info.id.empty()) << "session " << i;
    ids.push_back(info.id);
  }
  auto health = client_->Call(wire::HealthRequest{});
  ASSERT_TRUE(health);
  auto* h = std::get_if<wire::HealthInfo>(&health->body);
  ASSERT_NE(h, nullptr);
  EXPECT_GE(h->sessions_active, static_cast<uint32_t>(kSessions));
  for (const auto& id : ids) ASSERT_TRUE(client_->Call(wire::KillRequest{id}));
  for (const auto& id : ids) ASSERT_TRUE(WaitEnded(*client_, id)) << id << " never ended";
}

// The same xorshift64 stream mp_probe's `emit` writes, hashed with FNV-1a.
struct StreamCheck {
  uint64_t x, pending = 0;
  int pending_bytes = 0;
  uint64_t position = 0;
  bool ok = true;
  explicit StreamCheck(uint64_t seed) : x(seed | 1) {}
  void Feed(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i, ++position) {
      if (pending_bytes == 0) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pending = x;
        pending_bytes = 8;
      }
      const uint8_t want = static_cast<uint8_t>(pending >> (8 * (8 - pending_bytes)));
      --pending_bytes;
      if (p[i] != want) ok = false;
    }
  }
};

// 256 MiB: many times what a subscriber's outbox holds, so the slow subscriber reads most of it
// back from the transcript; the 1 GiB figures (rate, RSS) are bench/'s, not a test's.
TEST_F(SupervisorTest, A256MibStreamReachesAFastAndASlowSubscriberWhole) {
  constexpr uint64_t kBytes = 256ull << 20;
  constexpr uint64_t kSeed = 12345;
  wire::SpawnRequest req;
  req.preset = "bulk";
  req.client = "test";
  req.task = "unused";
  req.command = StagedProbe();
  req.args = std::vector<std::string>{"emit", std::to_string(kBytes), std::to_string(kSeed)};
  // The probe takes the task as its last argument; `emit` ignores extras.
  auto slow_client = ControlClient::Connect(daemon_->socket());
  ASSERT_TRUE(slow_client);
  auto info = Spawn(req);
  ASSERT_FALSE(info.id.empty());
  ASSERT_TRUE(slow_client->Call(wire::SubscribeRequest{info.id, 0}));

  // Fast: this thread reads everything as it comes.
  StreamCheck fast(kSeed);
  auto fast_result = Follow(info.id, 0, [&](const uint8_t* p, size_t n) { fast.Feed(p, n); });
  // Slow: subscribed from the start, read only now and with pauses: what the
  // outbox could not hold comes back from the transcript.
  StreamCheck slow(kSeed);
  uint64_t slow_next = 0;
  bool slow_exit = false;
  int events = 0;
  while (!slow_exit) {
    auto ev = slow_client->NextEvent(std::chrono::seconds(120));
    ASSERT_TRUE(ev) << ev.error().ToString();
    if (auto* o = std::get_if<wire::OutputEvent>(&*ev)) {
      ASSERT_EQ(o->offset, slow_next) << "the slow subscriber lost bytes";
      slow.Feed(o->data.data(), o->data.size());
      slow_next += o->data.size();
      if (++events % 64 == 0) ::usleep(1000);
    } else if (std::holds_alternative<wire::GapEvent>(*ev)) {
      FAIL() << "a gap: the transcript should hold the whole stream";
    } else if (std::holds_alternative<wire::ExitEvent>(*ev)) {
      slow_exit = true;
    }
  }
  ASSERT_TRUE(fast_result.end);
  EXPECT_EQ(fast_result.end->exit_code, 0);
  EXPECT_EQ(fast.position, kBytes);
  EXPECT_TRUE(fast.ok) << "the fast subscriber's bytes differ from the stream";
  EXPECT_EQ(slow.position, kBytes);
  EXPECT_TRUE(slow.ok) << "the slow subscriber's bytes differ from the stream";
  // The supervisor's memory during such a stream is measured by bench/api_bench.sh (RSS over
  // the stream against idle, a ratio), not asserted here.
}

TEST_F(SupervisorTest, SighupReloadsPoliciesAndKeepsTheOldSetOnError) {
  const auto names = [&] {
    std::vector<std::string> out;
    auto list = client_->Call(wire::PoliciesRequest{});
    EXPECT_TRUE(list) << list.error().ToString();
    auto* pl = list ? std::get_if<wire::PolicyList>(&list->body) : nullptr;
    EXPECT_NE(pl, nullptr) << "the policies request was answered with an error";
    for (const auto& p : pl ? pl->policies : std::vector<wire::PolicyInfo>{}) {
      out.push_back(p.name);
    }
    return out;
  };
  const auto lists = [&](const std::string& name) {
    const auto n = names();
    return std::find(n.begin(), n.end(), name) != n.end();
  };
  const size_t log_start = Daemon::Log().size();
  WriteFile(kBase + "/policies/broken.json", "{\"description\": 1}");
  ::kill(daemon_->pid(), SIGHUP);
  // The reload is done once the daemon has named the broken file.
  ASSERT_TRUE(
      WaitFor([&] { return Daemon::Log().find("broken.json", log_start) != std::string::npos; },
              std::chrono::seconds(30)))
      << "no error naming broken.json after SIGHUP:\n"
      << Daemon::Log().substr(log_start);
  EXPECT_FALSE(lists("broken"));
  EXPECT_TRUE(lists("exec")) << "the previous set must stay in force";
  ::unlink((kBase + "/policies/broken.json").c_str());
  WriteFile(kBase + "/policies/extra.json", kExecPolicy);
  ::kill(daemon_->pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return lists("extra"); }, std::chrono::seconds(30)))
      << "the reloaded set lacks the new preset:\n"
      << Daemon::Log().substr(log_start);
  auto list = client_->Call(wire::PoliciesRequest{});
  ASSERT_TRUE(list);
  auto* pl = std::get_if<wire::PolicyList>(&list->body);
  ASSERT_NE(pl, nullptr);
  const wire::PolicyInfo* extra = nullptr;
  for (const auto& p : pl->policies) {
    if (p.name == "extra") extra = &p;
  }
  ASSERT_NE(extra, nullptr) << "the reloaded set lacks the new preset";
  // The listing carries the policy's limits (kExecPolicy).
  EXPECT_EQ(extra->memory_max_bytes, 268435456u);
  EXPECT_EQ(extra->pids_max, 128u);
  EXPECT_EQ(extra->cpu_max_percent, std::nullopt);
  EXPECT_EQ(extra->wall_seconds, 900u);
  EXPECT_EQ(extra->idle_seconds, 600u);
  EXPECT_EQ(extra->network, wire::NetworkMode::kNone);
}

// The line of `text` that holds every one of `needles`, or "".
std::string LineWith(const std::string& text, const std::vector<std::string>& needles) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    if (std::all_of(needles.begin(), needles.end(),
                    [&](const std::string& n) { return line.find(n) != std::string::npos; })) {
      return line;
    }
    start = end + 1;
  }
  return "";
}

TEST_F(SupervisorTest, AuditLogRecordsControlActions) {
  auto req = Exec("true");
  req.client = "audit-client-42";
  req.owner = "audit-owner";
  req.labels = {"audit-label"};
  auto info = Spawn(req);
  ASSERT_FALSE(info.id.empty());
  // A kill that came through a trusted proxy: the client it reported, and the proxy `via`.
  wire::KillRequest kill{info.id};
  kill.principal = "admin";
  kill.client = "api:203.0.113.9";
  kill.via = "127.0.0.1";
  (void)client_->Call(kill);
  // What the API reports itself: a refused credential, a limiter refusal, a read.
  wire::AuditRequest failed;
  failed.action = wire::AuditAction::kAuthFailed;
  failed.client = "api:198.51.100.7";
  failed.via = "10.0.0.2";
  failed.reason = wire::AuthFailureReason::kRevoked;
  failed.route = "GET /sessions";
  wire::AuditRequest limited;
  limited.action = wire::AuditAction::kRateLimited;
  limited.client = "api:198.51.100.8";
  limited.route = "POST /sessions";
  wire::AuditRequest read;
  read.action = wire::AuditAction::kRead;
  read.principal = "token:0123456789abcdef";
  read.client = "api:198.51.100.9";
  read.session = info.id;
  read.route = "GET /sessions/{id}/output";
  for (const auto& a : {failed, limited, read}) {
    auto r = client_->Call(a);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_TRUE(r->ok()) << wire::ToString(a.action) << " was refused";
  }
  std::ifstream f(kBase + "/audit.log");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"action\":\"spawn\",\"session\":\"" + info.id), std::string::npos) << text;
  EXPECT_NE(text.find("audit-client-42"), std::string::npos) << text;
  // Named members, not free text: the spawn line carries the session's owner and labels.
  EXPECT_NE(text.find(R"("owner":"audit-owner","labels":["audit-label"])"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("\"detail\":"), std::string::npos) << text;
  EXPECT_NE(
      LineWith(text, {"\"action\":\"kill\",\"session\":\"" + info.id, R"("principal":"admin")",
                      R"("client":"api:203.0.113.9","via":"127.0.0.1","outcome":"ok")",
                      "\"already_ended\":"}),
      "")
      << text;
  // A spawn without a proxy: `via` is null.
  EXPECT_NE(LineWith(text, {"\"action\":\"spawn\",\"session\":\"" + info.id,
                            R"("client":"audit-client-42","via":null)"}),
            "")
      << text;
  EXPECT_NE(
      LineWith(text, {R"("action":"auth_failed","session":"","principal":null)",
                      R"("client":"api:198.51.100.7","via":"10.0.0.2")",
                      R"("outcome":"unauthorized","reason":"revoked","route":"GET /sessions")"}),
      "")
      << text;
  EXPECT_NE(LineWith(text, {R"("action":"rate_limited","session":"","principal":null)",
                            R"("client":"api:198.51.100.8","via":null)",
                            R"("outcome":"rate_limited","route":"POST /sessions")"}),
            "")
      << text;
  EXPECT_NE(
      LineWith(text, {"\"action\":\"read\",\"session\":\"" + info.id,
                      R"("principal":"token:0123456789abcdef")", R"("client":"api:198.51.100.9")",
                      R"("route":"GET /sessions/{id}/output")"}),
      "")
      << text;
}

int CountLeaves() {
  int n = 0;
  if (DIR* d = ::opendir(kLeaves.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_type == DT_DIR && e->d_name[0] == 's' && e->d_name[1] == '-') ++n;
    }
    ::closedir(d);
  }
  return n;
}

int CountNobodyProcesses() {
  int n = 0;
  DIR* d = ::opendir("/proc");
  while (const dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    struct stat st {};
    if (::stat((std::string("/proc/") + e->d_name).c_str(), &st) == 0 && st.st_uid == 65534) ++n;
  }
  if (d) ::closedir(d);
  return n;
}

// The control of the survival test below: without the fd store (no NOTIFY_SOCKET, as in dev
// mode), SIGKILL of the supervisor ends every session and leaves no process; the next start
// marks them supervisor_restart.
TEST(SupervisorRestartTest, SigkillLeavesNoProcessAndRestartMarksSessions) {
  for (int trial = 0; trial < 20; ++trial) {
    Daemon daemon;
    daemon.Start();
    auto c = ControlClient::Connect(daemon.socket());
    ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
    wire::SpawnRequest req;
    req.task = "setsid sh -c 'sleep 1000 & sleep 1000' & (sleep 1000 &) ; sleep 1000";
    req.client = "test";
    auto r = c->Call(req);
    ASSERT_TRUE(r && r->ok());
    const std::string id = std::get<wire::SessionInfo>(r->body).id;
    // The whole tree first: the four sleepers (setsid'd, backgrounded, orphaned, foreground).
    const auto sleepers = [&] {
      const auto procs = LeafProcesses(kLeaves + "/" + id).value_or(std::vector<pid_t>{});
      return std::count_if(procs.begin(), procs.end(),
                           [](pid_t p) { return Cmdline(p) == "sleep 1000"; });
    };
    ASSERT_TRUE(WaitFor([&] { return sleepers() == 4; }, std::chrono::seconds(60)))
        << "trial " << trial << ": " << sleepers() << " of 4 sleepers in the leaf";
    ASSERT_GE(CountNobodyProcesses(), 4);
    daemon.Stop(SIGKILL);
    // How fast they go is for a benchmark; that they all go is the promise (30 s hang guard).
    ASSERT_TRUE(WaitFor([] { return CountNobodyProcesses() == 0; }, std::chrono::seconds(30)))
        << "trial " << trial << ": " << CountNobodyProcesses()
        << " session processes outlived the supervisor";
    if (trial % 5 != 0) continue;
    // Restart: the session is marked, its leaf removed.
    daemon.Start();
    auto c2 = ControlClient::Connect(daemon.socket());
    ASSERT_TRUE(c2) << Daemon::Log();
    auto got = c2->Call(wire::GetRequest{id});
    ASSERT_TRUE(got);
    auto* info = std::get_if<wire::SessionInfo>(&got->body);
    ASSERT_NE(info, nullptr);
    ASSERT_TRUE(info->end.has_value());
    EXPECT_EQ(info->end->reason, wire::EndReason::kSupervisorRestart);
    EXPECT_EQ(CountLeaves(), 0);
  }
}

// Processes of nobody (the sessions' user) that are in no session leaf: escaped or leaked.
int NobodyOutsideLeaves() {
  int n = 0;
  DIR* d = ::opendir("/proc");
  while (const dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string dir = std::string("/proc/") + e->d_name;
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || st.st_uid != 65534) continue;
    // (the process may exit meanwhile: read(2), which ifstream would turn into an exception)
    const std::string cg = ReadWholeFile(dir + "/cgroup").value_or("");
    if (!cg.empty() && cg.find("/mp-daemon-test/sessions/s-") == std::string::npos) ++n;
  }
  if (d) ::closedir(d);
  return n;
}

// The processes of a leaf other than sleep (the printer's pauses come and go).
size_t SteadyProcesses(const std::string& id) {
  const auto procs = LeafProcesses(kLeaves + "/" + id).value_or(std::vector<pid_t>{});
  return static_cast<size_t>(std::count_if(
      procs.begin(), procs.end(), [](pid_t p) { return !Cmdline(p).starts_with("sleep 0"); }));
}

// With the fd store (the test plays systemd's, as fd_store_test does): 20 times SIGKILL of the
// supervisor and a start that gets the stored fds back. A session printing a sequence and a
// tree of four sleepers live through all of it: after each start both run, have lived through
// one more restart, the same processes in their leaves, none outside; at the end the printer's
// output is its whole sequence, in order, and nothing is left.
TEST(SupervisorRestartTest, SessionsSurviveTwentySigkillsWithTheFdStore) {
  Daemon daemon;  // first: it empties the test's directory, where the notify socket goes
  FakeManager manager(kBase + "/notify");
  const auto start = [&] {
    manager.messages.clear();
    daemon.Start(&manager);
    manager.ReceiveUntil([&] { return manager.Said("READY=1"); });
    return manager.Said("READY=1");
  };
  ASSERT_TRUE(start()) << Daemon::Log();
  auto first = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(first) << first.error().ToString() << Daemon::Log();
  std::optional<ControlClient> c(std::move(*first));
  const auto spawn = [&](const std::string& task) {
    wire::SpawnRequest req;
    req.task = task;
    req.client = "test";
    auto r = c->Call(req);
    EXPECT_TRUE(r && r->ok()) << Daemon::Log();
    // The notify socket queues 10 datagrams (net.unix.max_dgram_qlen); systemd reads them at
    // once, and so does the test after each spawn (a session stores 6 fds).
    const size_t stored = manager.store.size();
    manager.ReceiveUntil([&] { return manager.store.size() == stored + 6; });
    return r && r->ok() ? std::get<wire::SessionInfo>(r->body).id : std::string();
  };
  // "n 1", "n 2", … with a short pause every 20 lines, until the file "stop"; then "end N".
  const std::string printer = spawn(
      "i=0; until [ -e stop ]; do i=$((i+1)); echo \"n $i\"; "
      "[ $((i % 20)) = 0 ] && sleep 0.02; done; echo \"end $i\"");
  const std::string tree =
      spawn("setsid sh -c 'sleep 1000 & sleep 1000' & (sleep 1000 &) ; sleep 1000");
  ASSERT_FALSE(printer.empty() || tree.empty());
  manager.ReceiveUntil([&] { return manager.store.size() == 12; });
  ASSERT_EQ(manager.store.size(), 12u) << ::testing::PrintToString(manager.StoredNames());
  const auto sleepers = [&] {
    const auto procs = LeafProcesses(kLeaves + "/" + tree).value_or(std::vector<pid_t>{});
    return std::count_if(procs.begin(), procs.end(),
                         [](pid_t p) { return Cmdline(p) == "sleep 1000"; });
  };
  ASSERT_TRUE(WaitFor([&] { return sleepers() == 4; }, std::chrono::seconds(60)));
  const size_t printer_procs = SteadyProcesses(printer), tree_procs = SteadyProcesses(tree);

  for (uint32_t trial = 1; trial <= 20; ++trial) {
    daemon.Stop(SIGKILL);
    ::usleep(100 * 1000);  // the sessions run on, unsupervised
    ASSERT_EQ(sleepers(), 4) << "trial " << trial << ": the tree did not outlive SIGKILL";
    ASSERT_TRUE(start()) << "trial " << trial << Daemon::Log();
    auto c2 = ControlClient::Connect(daemon.socket());
    ASSERT_TRUE(c2) << Daemon::Log();
    for (const auto& id : {printer, tree}) {
      auto got = c2->Call(wire::GetRequest{id});
      auto* info = got ? std::get_if<wire::SessionInfo>(&got->body) : nullptr;
      ASSERT_NE(info, nullptr) << "trial " << trial;
      ASSERT_FALSE(info->end) << "trial " << trial << ": " << id << " ended: " << info->end->detail
                              << Daemon::Log();
      EXPECT_EQ(info->supervisor_restarts, trial) << id;
    }
    for (const auto& m : manager.messages) {
      EXPECT_FALSE(m.starts_with("FDSTORE=1\n")) << "trial " << trial << ": stored again: " << m;
    }
    // (waited for: the printer's shell between fork and exec of its sleep counts, briefly)
    EXPECT_TRUE(
        WaitFor([&] { return SteadyProcesses(printer) == printer_procs; }, std::chrono::seconds(5)))
        << "trial " << trial << ": " << SteadyProcesses(printer) << " processes, not "
        << printer_procs;
    EXPECT_EQ(SteadyProcesses(tree), tree_procs) << "trial " << trial;
    EXPECT_EQ(NobodyOutsideLeaves(), 0) << "trial " << trial;
    c.emplace(std::move(*c2));
  }

  WriteFile(kWorkspace + "/stop", "");
  ASSERT_TRUE(WaitEnded(*c, printer)) << Daemon::Log();
  manager.Drain();  // its 6 removals, before the tree's 6 (the socket queues 10)
  auto out = c->ReadAllOutput(printer);
  ASSERT_TRUE(out) << out.error().ToString();
  const size_t last = out->rfind("end ");
  ASSERT_NE(last, std::string::npos) << "no end line: " << out->substr(out->size() - 100);
  const int lines = std::atoi(out->c_str() + last + 4);
  std::string expected;
  for (int i = 1; i <= lines; ++i) expected += "n " + std::to_string(i) + "\n";
  expected += "end " + std::to_string(lines) + "\n";
  EXPECT_GT(lines, 0);
  EXPECT_EQ(out->size(), expected.size());
  EXPECT_TRUE(*out == expected) << "the output differs from the sequence printed (" << lines
                                << " lines)";
  auto killed = c->Call(wire::KillRequest{tree});
  ASSERT_TRUE(killed && killed->ok());
  ASSERT_TRUE(WaitEnded(*c, tree));
  EXPECT_TRUE(WaitFor([] { return CountLeaves() == 0 && CountNobodyProcesses() == 0; },
                      std::chrono::seconds(30)))
      << CountLeaves() << " leaves, " << CountNobodyProcesses() << " session processes left";
  manager.ReceiveUntil([&] { return manager.store.empty(); }, 5000);
  EXPECT_TRUE(manager.store.empty())
      << "left in the store: " << ::testing::PrintToString(manager.StoredNames());
}

}  // namespace
}  // namespace mp::testing

namespace mp::testing {
namespace {

TEST(SupervisorCapacityTest, MaxSessionsCountsRunningOnlyAndEndedRecordsAreBounded) {
  Daemon daemon;
  WriteFile(kBase + "/monkeyproof.conf",
            "api_user = root\nmax_sessions = 2\nmax_ended_sessions = 3\nkill_grace_ms = 200\n");
  daemon.Start();
  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString() << Daemon::Log();
  auto spawn = [&](const std::string& task) {
    wire::SpawnRequest req;
    req.task = task;
    req.client = "test";
    return c->Call(req);
  };
  auto a = spawn("sleep 600");
  auto b = spawn("sleep 600");
  ASSERT_TRUE(a && a->ok() && b && b->ok());
  auto third = spawn("sleep 600");
  ASSERT_TRUE(third);
  auto* err = std::get_if<wire::ErrorBody>(&third->body);
  ASSERT_NE(err, nullptr) << "a third running session must be refused";
  EXPECT_EQ(err->code, wire::ErrorCode::kCapacity) << err->message;
  EXPECT_EQ(err->field, "") << "capacity is no request field's fault: " << err->message;
  // Ended sessions do not count: end one, and a new one fits.
  const std::string first = std::get<wire::SessionInfo>(a->body).id;
  ASSERT_TRUE(c->Call(wire::KillRequest{first}));
  ASSERT_TRUE(WaitEnded(*c, first)) << "the killed session never ended";
  auto fourth = spawn("true");
  ASSERT_TRUE(fourth && fourth->ok()) << "an ended session still counted against max_sessions";
  const std::string fourth_id = std::get<wire::SessionInfo>(fourth->body).id;
  ASSERT_TRUE(WaitEnded(*c, fourth_id)) << "`true` never ended";
  // Ended records are bounded: after five more short sessions only three are kept.
  for (int i = 0; i < 5; ++i) {
    auto r = spawn("true");
    ASSERT_TRUE(r && r->ok());
    const std::string id = std::get<wire::SessionInfo>(r->body).id;
    ASSERT_TRUE(WaitEnded(*c, id)) << "`true` never ended";
  }
  auto list = c->Call(wire::ListRequest{});
  ASSERT_TRUE(list);
  int ended = 0;
  for (const auto& s : std::get<wire::SessionList>(list->body).sessions) ended += s.end ? 1 : 0;
  EXPECT_LE(ended, 3);
  int dirs = 0;
  if (DIR* d = ::opendir((kBase + "/state/sessions").c_str())) {
    while (const dirent* e = ::readdir(d)) dirs += e->d_name[0] == 's' ? 1 : 0;
    ::closedir(d);
  }
  EXPECT_LE(dirs, 4) << "ended sessions' files must go with their records";
}

}  // namespace
}  // namespace mp::testing

namespace mp::testing {
namespace {

// Spawning never blocks the supervisor's loop: while one spawn is wedged (its child stops
// before it reports, through the daemon's test hook), another session streams its output,
// a list is answered and a kill completes; then the wedged spawn ends as spawn_error naming
// the step it stalled in, its leaf gone. With a blocking spawn, every call below would wait
// for the wedged one's timeout, and the "not answered yet" checks would fail.
TEST(SupervisorSpawnTest, AWedgedSpawnBlocksNothingElseAndTimesOutNamingTheStep) {
  constexpr char kWedgeTask[] = "echo this spawn is wedged by the test hook";
  Daemon daemon;
  WriteFile(kBase + "/monkeyproof.conf",
            "kill_grace_ms = 500\nmax_sessions = 250\napi_user = root\n"
            "spawn_timeout_ms = 12000\n");
  ::setenv("MONKEYPROOFD_TEST_STALL_SPAWN_TASK", kWedgeTask, 1);
  daemon.Start();
  ::unsetenv("MONKEYPROOFD_TEST_STALL_SPAWN_TASK");

  auto wedged_client = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(wedged_client) << wedged_client.error().ToString() << Daemon::Log();
  std::atomic<bool> wedged_answered{false};
  std::optional<Result<wire::Response>> wedged_answer;
  const auto wedged_sent = std::chrono::steady_clock::now();
  std::thread wedged([&] {
    wire::SpawnRequest req;
    req.task = kWedgeTask;
    req.client = "test";
    wedged_answer.emplace(wedged_client->Call(req, std::chrono::seconds(90)));
    wedged_answered = true;
  });
  // An assertion that returns early still joins the caller (the spawn is answered at the
  // latest when its start deadline passes).
  struct Joiner {
    std::thread& thread;
    ~Joiner() {
      if (thread.joinable()) thread.join();
    }
  } joiner{wedged};

  auto c = ControlClient::Connect(daemon.socket());
  ASSERT_TRUE(c) << c.error().ToString();
  // The wedged session is listed as starting: its spawn has reached the sandbox.
  std::string wedged_id;
  for (int i = 0; i < 200 && wedged_id.empty(); ++i) {
    auto listed = c->Call(wire::ListRequest{});
    ASSERT_TRUE(listed && listed->ok()) << Daemon::Log();
    for (const auto& s : std::get<wire::SessionList>(listed->body).sessions) {
      if (s.state == wire::SessionState::kStarting) wedged_id = s.id;
    }
    if (wedged_id.empty()) ::usleep(20 * 1000);
  }
  ASSERT_FALSE(wedged_id.empty()) << "the wedged spawn never showed as starting";
  // A starting session takes no input yet, and says so.
  auto early = c->Call(wire::StdinRequest{wedged_id, {'x', '\n'}});
  ASSERT_TRUE(early);
  auto* refused = std::get_if<wire::ErrorBody>(&early->body);
  ASSERT_NE(refused, nullptr) << "stdin to a starting session was accepted";
  EXPECT_EQ(refused->code, wire::ErrorCode::kWrongState);
  EXPECT_EQ(refused->field, "/session");
  EXPECT_NE(refused->message.find("is still starting"), std::string::npos) << refused->message;

  // Another session streams its output to the end.
  wire::SpawnRequest stream;
  stream.task = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; sleep 0.05; done";
  stream.client = "test";
  auto spawned = c->Call(stream);
  ASSERT_TRUE(spawned && spawned->ok()) << Daemon::Log();
  const std::string stream_id = std::get<wire::SessionInfo>(spawned->body).id;
  auto sub = c->Call(wire::SubscribeRequest{stream_id, 0});
  ASSERT_TRUE(sub && sub->ok());
  std::string out;
  std::optional<wire::EndRecord> end;
  while (!end) {
    auto ev = c->NextEvent(std::chrono::seconds(30));
    ASSERT_TRUE(ev) << ev.error().ToString();
    if (auto* o = std::get_if<wire::OutputEvent>(&*ev); o && o->session == stream_id) {
      out.append(o->data.begin(), o->data.end());
    } else if (auto* x = std::get_if<wire::ExitEvent>(&*ev); x && x->session == stream_id) {
      end = x->end;
    }
  }
  EXPECT_EQ(out, "line1\nline2\nline3\nline4\nline5\nline6\nline7\nline8\nline9\nline10\n");
  EXPECT_EQ(end->reason, wire::EndReason::kExit);

  // A kill completes.
  wire::SpawnRequest sleeper;
  sleeper.task = "sleep 1000";
  sleeper.client = "test";
  auto s2 = c->Call(sleeper);
  ASSERT_TRUE(s2 && s2->ok());
  const std::string sleeper_id = std::get<wire::SessionInfo>(s2->body).id;
  auto killed = c->Call(wire::KillRequest{sleeper_id});
  ASSERT_TRUE(killed && killed->ok());
  ASSERT_TRUE(c->Call(wire::SubscribeRequest{sleeper_id, 0}));
  std::optional<wire::EndRecord> killed_end;
  while (!killed_end) {
    auto ev = c->NextEvent(std::chrono::seconds(30));
    ASSERT_TRUE(ev) << ev.error().ToString();
    if (auto* x = std::get_if<wire::ExitEvent>(&*ev); x && x->session == sleeper_id) {
      killed_end = x->end;
    }
  }
  EXPECT_EQ(killed_end->reason, wire::EndReason::kKilledByRequest);

  // All of that happened while the wedged spawn was still unanswered.
  EXPECT_FALSE(wedged_answered.load())
      << "the wedged spawn was answered before the other calls finished: did they wait for it?";

  wedged.join();
  const auto waited = std::chrono::steady_clock::now() - wedged_sent;
  ASSERT_TRUE(wedged_answer && *wedged_answer) << Daemon::Log();
  auto* info = std::get_if<wire::SessionInfo>(&(*wedged_answer)->body);
  ASSERT_NE(info, nullptr) << "the wedged spawn got an error response instead of a record";
  EXPECT_EQ(info->id, wedged_id);
  EXPECT_EQ(info->state, wire::SessionState::kFailed);
  ASSERT_TRUE(info->end.has_value());
  EXPECT_EQ(info->end->reason, wire::EndReason::kSpawnError);
  EXPECT_NE(info->end->detail.find("did not finish within 12000 ms"), std::string::npos)
      << info->end->detail;
  EXPECT_NE(info->end->detail.find("stalled in step: report started"), std::string::npos)
      << info->end->detail;
  EXPECT_GE(waited, std::chrono::seconds(12));
  EXPECT_NE(::access((kLeaves + "/" + wedged_id).c_str(), F_OK), 0) << "the leaf is still there";
  // The record is kept, inspectable.
  auto got = c->Call(wire::GetRequest{wedged_id});
  ASSERT_TRUE(got && got->ok());
  EXPECT_EQ(std::get<wire::SessionInfo>(got->body).end->reason, wire::EndReason::kSpawnError);
}

}  // namespace
}  // namespace mp::testing
