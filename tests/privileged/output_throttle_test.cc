// The output throttle (output.on_flood "throttle") in a real monkeyproofd in the test VM: the
// shipped exec policy receives a 40 MB `base64` whole, against the control of the same probe
// under on_flood "kill" (output_flood, fewer bytes); and, with small test ceilings, what must
// still hold while output is held back: no idle timeout, a kill or the wall deadline ends the
// session at once, the exit drains the pipe, a terminal throttles and takes input, the
// transcript cap applies. Root in the VM only (the VM guard skips elsewhere).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "control_client.h"
#include "proc_watch.h"
#include "sandbox/spawn.h"  // kDefaultOutputPipeBytes

namespace mp::testing {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

const std::string kDaemon = MP_MONKEYPROOFD_PATH;
const std::string kShippedExec = std::string(MP_SOURCE_DIR) + "/policies/exec.json";
const std::string kBase = "/var/tmp/mp-throttle-test";
const std::string kCgroup = "/sys/fs/cgroup/mp-throttle-test";
// The cgroup the daemon makes below its root for the session leaves (sandbox::kSessionsCgroup).
const std::string kLeaves = kCgroup + "/sessions";
// Inside the shipped exec policy's workspace_roots, so its own file can be used unchanged.
const std::string kWorkspace = "/var/lib/monkeyproof/workspaces/throttle-test";

// The probe of issue 17: about 40.5 MB of base64 at full speed.
const char kFloodTask[] = "head -c 30000000 /dev/zero | base64";

// Small ceilings, so that each property shows in seconds. "slow": a 64 KiB bucket refilled at
// 16 KiB/s, so every pause lasts 4 s, twice the idle deadline.
std::string TestPolicy(const std::string& type, const std::string& command,
                       const std::string& output, const std::string& deadlines) {
  return R"({"description": "throttle test", "type": ")" + type + R"(", "command": )" + command +
         (type == "exec" ? "" : R"(, "bypasses_agent_permissions": false)") +
         R"(, "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/lib/monkeyproof/workspaces"], "default_workspace": ")" +
         kWorkspace + R"(",
  "deadlines": )" +
         deadlines + R"(, "output": )" + output + R"(,
  "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TERM": "dumb"}}})";
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return static_cast<bool>(f);
}

// Byte count and FNV-1a of a stream.
struct Digest {
  uint64_t bytes = 0;
  uint64_t hash = 1469598103934665603ull;
  void Feed(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
    bytes += n;
  }
};

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

class OutputThrottleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system(("rm -rf " + kBase + " " + kWorkspace).c_str()) != 0) return;
    ::mkdir(kBase.c_str(), 0755);
    ::mkdir((kBase + "/policies").c_str(), 0755);
    if (std::system(("mkdir -p " + kWorkspace + " && chown nobody " + kWorkspace).c_str()) != 0) {
      return;
    }
    // The shipped policy unchanged, and the control: the same file with on_flood "kill".
    const std::string exec = Slurp(kShippedExec);
    std::string kill = exec;
    const std::string throttle = R"("on_flood": "throttle")";
    const size_t at = kill.find(throttle);
    if (at == std::string::npos) return;  // SetUp reports it
    kill.replace(at, throttle.size(), R"("on_flood": "kill")");
    const std::string rate = R"("max_rate_bytes_per_second": 16384, "max_rate_window_seconds": 4)";
    const bool written =
        WriteFile(kBase + "/policies/exec.json", exec) &&
        WriteFile(kBase + "/policies/exec-kill.json", kill) &&
        WriteFile(kBase + "/policies/slow.json",
                  TestPolicy("exec", "[]", "{" + rate + "}",
                             R"({"wall_seconds": 120, "idle_seconds": 2})")) &&
        WriteFile(
            kBase + "/policies/slow-pty.json",
            TestPolicy("interactive", R"(["/bin/sh", "-c"])",
                       R"({"max_rate_bytes_per_second": 65536, "max_rate_window_seconds": 1})",
                       R"({"wall_seconds": 120, "idle_seconds": 60})")) &&
        WriteFile(kBase + "/policies/capped.json",
                  TestPolicy("exec", "[]",
                             R"({"ring_bytes": 65536, "transcript_max_bytes": 1048576,
                                 "max_rate_bytes_per_second": 1048576,
                                 "max_rate_window_seconds": 1})",
                             R"({"wall_seconds": 120, "idle_seconds": 60})")) &&
        WriteFile(kBase + "/monkeyproof.conf", "kill_grace_ms = 500\napi_user = root\n");
    if (!written) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open((kBase + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 2);
      ::execl(kDaemon.c_str(), kDaemon.c_str(), "--config", (kBase + "/monkeyproof.conf").c_str(),
              "--state-dir", (kBase + "/state").c_str(), "--socket",
              (kBase + "/run/control.sock").c_str(), "--cgroup-root", kCgroup.c_str(), "--policies",
              (kBase + "/policies").c_str(), "--audit-log", (kBase + "/audit.log").c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  void SetUp() override {
    ASSERT_NE(Slurp(kShippedExec).find(R"("on_flood": "throttle")"), std::string::npos)
        << kShippedExec << " no longer says on_flood \"throttle\"";
    ASSERT_GT(pid_, 0) << "the daemon was not started (setup of " << kBase << " failed)";
    auto c = ControlClient::Connect(kBase + "/run/control.sock");
    ASSERT_TRUE(c) << c.error().ToString() << "\n" << Log();
    client_.emplace(std::move(*c));
  }
  static std::string Log() { return Slurp(kBase + "/daemon.log"); }

  wire::SessionInfo Spawn(wire::SpawnRequest req) {
    req.client = "test";
    req.cwd = kWorkspace;
    auto r = client_->Call(req);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r) return {};
    if (auto* e = std::get_if<wire::ErrorBody>(&r->body)) {
      ADD_FAILURE() << "spawn refused: " << e->message;
      return {};
    }
    return std::get<wire::SessionInfo>(r->body);
  }
  wire::SpawnRequest Task(const std::string& preset, const std::string& task) {
    wire::SpawnRequest r;
    r.preset = preset;
    r.task = task;
    if (preset == "slow-pty") {
      r.type = wire::SessionType::kInteractive;
      r.pty = wire::PtySize{24, 80};
    }
    return r;
  }
  std::optional<wire::SessionInfo> Get(const std::string& id) {
    auto got = client_->Call(wire::GetRequest{id});
    if (!got) return std::nullopt;
    if (auto* info = std::get_if<wire::SessionInfo>(&got->body)) return *info;
    return std::nullopt;
  }
  // Waits until the session has produced at least `bytes` (so that it is being throttled).
  bool WaitOutput(const std::string& id, uint64_t bytes) {
    return WaitFor(
        [&] {
          auto info = Get(id);
          return info && info->output_bytes >= bytes;
        },
        std::chrono::seconds(60));
  }

  // Subscribes from 0 and reads until the exit event.
  struct Followed {
    Digest digest;
    std::string text;  // kept only when asked
    std::optional<wire::EndRecord> end;
    bool contiguous = true;
    int gaps = 0;
  };
  Followed Follow(const std::string& id, bool keep_text) {
    Followed f;
    auto ack = client_->Call(wire::SubscribeRequest{id, 0});
    EXPECT_TRUE(ack && ack->ok());
    for (;;) {
      auto ev = client_->NextEvent(std::chrono::seconds(180));
      if (!ev) {
        ADD_FAILURE() << ev.error().ToString();
        return f;
      }
      if (auto* o = std::get_if<wire::OutputEvent>(&*ev); o && o->session == id) {
        if (o->offset != f.digest.bytes) f.contiguous = false;
        f.digest.Feed(o->data.data(), o->data.size());
        if (keep_text) f.text.append(o->data.begin(), o->data.end());
      } else if (auto* g = std::get_if<wire::GapEvent>(&*ev); g && g->session == id) {
        ++f.gaps;
      } else if (auto* x = std::get_if<wire::ExitEvent>(&*ev); x && x->session == id) {
        f.end = x->end;
        return f;
      }
    }
  }

  static pid_t pid_;
  std::optional<ControlClient> client_;
};
pid_t OutputThrottleTest::pid_ = -1;

// What the same command prints run directly (not sandboxed) in this VM.
Digest RunDirectly(const char* command) {
  Digest d;
  FILE* p = ::popen(command, "r");
  if (p == nullptr) return d;
  uint8_t buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) d.Feed(buf, n);
  ::pclose(p);
  return d;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

TEST_F(OutputThrottleTest, ShippedExecPolicyDeliversEveryByteOfA40MbFlood) {
  const Digest direct = RunDirectly(kFloodTask);
  ASSERT_EQ(direct.bytes, 40526316u) << "the probe itself printed something else";
  const auto start = Clock::now();
  auto info = Spawn(Task("exec", kFloodTask));
  ASSERT_FALSE(info.id.empty());
  auto f = Follow(info.id, false);
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(f.end);
  EXPECT_EQ(f.end->reason, wire::EndReason::kExit) << f.end->detail;
  EXPECT_EQ(f.end->exit_code, 0);
  EXPECT_TRUE(f.contiguous);
  EXPECT_EQ(f.gaps, 0);
  EXPECT_EQ(f.digest.bytes, direct.bytes);
  EXPECT_EQ(f.digest.hash, direct.hash) << "the bytes differ from the command's own output";
  ASSERT_TRUE(f.end->output_throttled_ms.has_value()) << "the flood was never throttled";
  // 40.5 MB at 1 MiB/s after a 10 MiB burst: about 28.6 s of the run was held back.
  EXPECT_GT(*f.end->output_throttled_ms, 20000u);
  // One log line for the one episode, not one per pause.
  EXPECT_EQ(Count(Log(), "session " + info.id + ": output over the ceiling"), 1u) << Log();
  std::printf(
      "[ measure  ] 40 MB flood under the shipped exec policy: %llu bytes in %.1f s, "
      "output held back %.1f s\n",
      static_cast<unsigned long long>(f.digest.bytes), took,
      static_cast<double>(*f.end->output_throttled_ms) / 1000);
  RecordProperty("flood_seconds", std::to_string(took));
}

// The control: the same probe under the same file with on_flood "kill" ends as output_flood,
// with fewer bytes (the 10 MiB ceiling and what was read before the kill landed).
TEST_F(OutputThrottleTest, ControlKillActionEndsTheSameFloodAsOutputFlood) {
  auto info = Spawn(Task("exec-kill", kFloodTask));
  ASSERT_FALSE(info.id.empty());
  auto f = Follow(info.id, false);
  ASSERT_TRUE(f.end);
  EXPECT_EQ(f.end->reason, wire::EndReason::kOutputFlood);
  EXPECT_NE(f.end->detail.find("more than 10485760 bytes of output within 10 s"), std::string::npos)
      << f.end->detail;
  EXPECT_GT(f.digest.bytes, 10u << 20);
  EXPECT_LT(f.digest.bytes, 40526316u);
  EXPECT_FALSE(f.end->output_throttled_ms.has_value());
  std::printf("[ measure  ] control (on_flood kill): %llu bytes, then output_flood\n",
              static_cast<unsigned long long>(f.digest.bytes));
}

// 192 KiB more than the output pipe holds (1 MiB, sandbox::kDefaultOutputPipeBytes) through a
// 64 KiB bucket at 16 KiB/s: the command can finish only once 192 KiB were read, after two
// pauses of 4 s while idle_seconds is 2. The last 1 MiB sits in the pipe when the command
// exits, and is read at once.
TEST_F(OutputThrottleTest, AThrottledSessionIsNotIdleAndItsExitDrainsThePipe) {
  constexpr uint64_t kBytes = sandbox::kDefaultOutputPipeBytes + (192u << 10);
  const auto start = Clock::now();
  auto info = Spawn(Task("slow", "head -c " + std::to_string(kBytes) + " /dev/zero"));
  ASSERT_FALSE(info.id.empty());
  auto f = Follow(info.id, false);
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_TRUE(f.end);
  EXPECT_EQ(f.end->reason, wire::EndReason::kExit) << f.end->detail;
  EXPECT_EQ(f.end->exit_code, 0);
  EXPECT_EQ(f.digest.bytes, kBytes);
  ASSERT_TRUE(f.end->output_throttled_ms.has_value());
  EXPECT_GT(*f.end->output_throttled_ms, 4000u);  // longer than the idle deadline
  EXPECT_GT(took, 4.0);
  EXPECT_LT(took, 30.0);
}

TEST_F(OutputThrottleTest, KillEndsAThrottledSessionAtOnceAndLeavesNothing) {
  auto info = Spawn(Task("slow", "yes"));
  ASSERT_FALSE(info.id.empty());
  ASSERT_TRUE(WaitOutput(info.id, 65536)) << "the session never filled its bucket";
  ASSERT_TRUE(Get(info.id)->state == wire::SessionState::kRunning);
  const auto start = Clock::now();
  ASSERT_TRUE(client_->Call(wire::KillRequest{info.id}));
  ASSERT_TRUE(WaitFor([&] { return Get(info.id)->end.has_value(); }, seconds(30)));
  EXPECT_LT(Clock::now() - start, seconds(5)) << "a throttled session must not delay its kill";
  EXPECT_EQ(Get(info.id)->end->reason, wire::EndReason::kKilledByRequest);
  EXPECT_TRUE(Get(info.id)->end->output_throttled_ms.has_value());
  EXPECT_TRUE(WaitFor([] { return CountLeaves() == 0; }, seconds(10))) << "a leaf is left";
}

TEST_F(OutputThrottleTest, TheWallDeadlineEndsAThrottledSession) {
  auto req = Task("slow", "yes");
  req.limits = wire::SpawnLimits{};
  req.limits->wall_seconds = 3;
  auto info = Spawn(req);
  ASSERT_FALSE(info.id.empty());
  auto f = Follow(info.id, false);
  ASSERT_TRUE(f.end);
  EXPECT_EQ(f.end->reason, wire::EndReason::kTimeoutWall);
  EXPECT_TRUE(f.contiguous);
  EXPECT_TRUE(WaitFor([] { return CountLeaves() == 0; }, seconds(10))) << "a leaf is left";
}

// A terminal session is throttled too (300 KB through a 64 KiB/s ceiling take about 4 s), and
// input typed while its output is held back reaches the command.
TEST_F(OutputThrottleTest, ATerminalSessionIsThrottledAndTakesInputMeanwhile) {
  auto info = Spawn(
      Task("slow-pty", "head -c 300000 /dev/zero | tr '\\0' a; read line; echo \"got:$line\""));
  ASSERT_FALSE(info.id.empty());
  ASSERT_TRUE(WaitOutput(info.id, 65536));
  const std::string line = "typed-while-throttled\n";
  auto sent = client_->Call(wire::StdinRequest{info.id, {line.begin(), line.end()}});
  ASSERT_TRUE(sent && sent->ok());
  EXPECT_LT(Get(info.id)->output_bytes, 300000u) << "the input was not sent while throttled";
  auto f = Follow(info.id, true);
  ASSERT_TRUE(f.end);
  EXPECT_EQ(f.end->exit_code, 0) << f.text.substr(f.text.size() > 300 ? f.text.size() - 300 : 0);
  // Every byte of the flood; the echo of the input and "got:" hold no 'a'.
  EXPECT_EQ(std::count(f.text.begin(), f.text.end(), 'a'), 300000);
  EXPECT_NE(f.text.find("got:typed-while-throttled"), std::string::npos);
  ASSERT_TRUE(f.end->output_throttled_ms.has_value());
}

// 4 MB at 1 MiB/s into a 1 MiB transcript: every byte is counted and the run is complete, and
// the transcript keeps its cap (what it dropped reads as a gap).
TEST_F(OutputThrottleTest, TheTranscriptCapStillApplies) {
  auto info = Spawn(Task("capped", "head -c 4000000 /dev/zero"));
  ASSERT_FALSE(info.id.empty());
  auto f = Follow(info.id, false);
  ASSERT_TRUE(f.end);
  EXPECT_EQ(f.end->reason, wire::EndReason::kExit);
  EXPECT_TRUE(f.end->output_throttled_ms.has_value());
  EXPECT_EQ(Get(info.id)->output_bytes, 4000000u);
  auto read = client_->Call(
      wire::ReadOutputRequest{info.id, 0, static_cast<uint32_t>(wire::kMaxChunkBytes)});
  ASSERT_TRUE(read);
  auto* r = std::get_if<wire::OutputRead>(&read->body);
  auto* e = std::get_if<wire::ErrorBody>(&read->body);
  ASSERT_NE(r, nullptr) << (e != nullptr ? e->message : "neither output nor an error");
  ASSERT_FALSE(r->gaps.empty()) << "the transcript held more than its cap";
  EXPECT_EQ(r->gaps.front().from, 0u);
}

}  // namespace
}  // namespace mp::testing
