// The allowlisted view and the private agent home (issue 13), each with its control:
// - a session's root shows /usr, /bin, /sbin, /lib*, /etc, /opt and what its binds add,
//   nothing of /run, /home, /root, /srv or /var (control: the old host-root view shows them);
// - no host Unix socket is reachable from the view of any shipped preset (control: the old
//   view reaches a listening socket under /run);
// - configuration planted in one session's home (shell profile, git config, the agent's
//   settings and hook file) never runs in the next session of the same policy, and the shared
//   state dir stays as the operator left it (control: with home.keep "shared", the old
//   behaviour, the same plant runs in the next session).
// Spawns go through the supervisor's BuildSpawnRequest, so the policy fields are what is
// tested. Root in the test VM only.
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "sandbox_runner.h"
#include "staged_probe.h"
#include "supervisor/policy.h"

namespace mp::testing {
namespace {

constexpr int kEscaped = 10;
constexpr int kBlocked = 20;
const std::string kPresets = std::string(MP_SOURCE_DIR) + "/policies";
const std::string kRoot = "/srv/monkeyproof/workspaces";  // the shipped presets' root
const std::string kBase = "/var/lib/mp-view-test";

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void MakeDir(const std::string& path, mode_t mode, uid_t uid = 0) {
  ASSERT_EQ(std::system(("mkdir -p '" + path + "'").c_str()), 0) << path;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  ASSERT_EQ(::chown(path.c_str(), uid, uid), 0) << path;
}

// Every session here runs as nobody (the shipped users may not exist in the VM).
supervisor::SpawnHost Host() {
  supervisor::SpawnHost h;
  h.credentials_dir = kBase + "/no-credentials";
  h.lookup_user = [](const std::string&) {
    return std::optional<supervisor::UserIds>(supervisor::UserIds{65534, 65534});
  };
  h.lookup_group = [](const std::string&) { return std::optional<gid_t>(65534); };
  h.getenv = [](const std::string&) { return std::optional<std::string>(); };
  return h;
}

class ViewTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { runner_ = new SandboxRunner("mp-view"); }
  static void TearDownTestSuite() {
    delete runner_;
    runner_ = nullptr;
  }

  // The spawn request `policy` makes for a session in `workspace` (created, nobody's), with
  // its command replaced by `argv` on pipes.
  static Result<sandbox::SpawnRequest> FromPolicy(const supervisor::Policy& policy,
                                                  const std::string& workspace,
                                                  std::vector<std::string> argv) {
    supervisor::SessionLaunch launch;
    launch.task = "unused";
    launch.cwd = workspace;
    MP_TRY(auto r,
           supervisor::BuildSpawnRequest(supervisor::EffectivePolicy{policy}, launch, Host()));
    r.argv = std::move(argv);
    r.stdio = sandbox::StdioMode::kPipes;
    return r;
  }

  static RunResult Run(const sandbox::SpawnRequest& req) {
    auto r = runner_->Run(req);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : RunResult{};
  }

  static SandboxRunner* runner_;
};
SandboxRunner* ViewTest::runner_ = nullptr;

std::set<std::string> Lines(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.insert(line);
  }
  return out;
}

TEST_F(ViewTest, RootShowsTheAllowlistAndTheBindsOnly) {
  auto req = runner_->BaseRequest({"/bin/ls", "-A", "/"});
  const std::set<std::string> seen = Lines(Run(req).out);
  // The workspace bind (under /var/tmp) brings /var; /opt holds the staged probe.
  for (const char* must : {"usr", "bin", "etc", "proc", "dev", "tmp", "sys", "var"}) {
    EXPECT_TRUE(seen.count(must)) << must << " missing from the view";
  }
  for (const std::string& name : seen) {
    const bool allowed =
        name.starts_with("lib") || std::set<std::string>{"usr",  "bin", "sbin", "etc", "opt",
                                                         "proc", "dev", "tmp",  "sys", "var"}
                                           .count(name) > 0;
    EXPECT_TRUE(allowed) << "/" << name << " is in the view";
  }
  EXPECT_FALSE(seen.count("run") || seen.count("home") || seen.count("root") || seen.count("srv"));
  // /var holds the workspace's path only.
  const std::set<std::string> var = Lines(Run(runner_->BaseRequest({"/bin/ls", "-A", "/var"})).out);
  EXPECT_EQ(var, std::set<std::string>{"tmp"});

  // Control: the old view is the host's root, /run and /home included.
  req.unsafe.host_root_view = true;
  const std::set<std::string> old = Lines(Run(req).out);
  EXPECT_TRUE(old.count("run") && old.count("home") && old.count("root")) << Run(req).out;
}

// A listening socket where host services keep theirs (journald, the system bus: /run).
class ListeningSocket {
 public:
  explicit ListeningSocket(const std::string& dir) : dir_(dir), path_(dir + "/service.sock") {
    ::mkdir(dir_.c_str(), 0755);
    ::unlink(path_.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a {};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
          ::chmod(path_.c_str(), 0777) == 0 && ::listen(fd_, 64) == 0;
  }
  ~ListeningSocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  bool ok() const { return ok_; }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
  int fd_ = -1;
  bool ok_ = false;
};

TEST_F(ViewTest, NoHostUnixSocketIsReachableFromAnyShippedPreset) {
  ListeningSocket run_socket("/run/mp-view-" + std::to_string(::getpid()));
  ASSERT_TRUE(run_socket.ok());
  auto set = supervisor::PolicySet::Load(kPresets);
  ASSERT_TRUE(set) << set.error().ToString();
  const std::string ws = kRoot + "/mp-view-test";
  MakeDir(ws, 0777);
  sandbox::SpawnRequest last;
  for (const auto& [name, policy] : set->all()) {
    SCOPED_TRACE("preset " + name);
    for (const auto& dir : policy->state_dirs) MakeDir(dir, 0700, 65534);
    auto req = FromPolicy(*policy, ws, {StagedProbe(), "unix-sockets"});
    ASSERT_TRUE(req) << req.error().ToString();
    const RunResult r = Run(*req);
    EXPECT_EQ(r.exit_code(), kBlocked) << r.out;
    auto direct = *req;
    direct.argv = {StagedProbe(), "connect-unix", run_socket.path()};
    EXPECT_EQ(Run(direct).exit_code(), kBlocked);
    last = *req;
  }
  // Control: the same preset's request with the old view reaches the host's socket.
  last.unsafe.host_root_view = true;
  const RunResult control = Run(last);
  EXPECT_EQ(control.exit_code(), kEscaped) << "control did not reach the socket: " << control.out;
  EXPECT_NE(control.out.find(run_socket.path()), std::string::npos) << control.out;
}

// A policy with an agent-like home at `state`, kept as `keep`.
std::shared_ptr<const supervisor::Policy> HomePolicy(const std::string& state,
                                                     const std::string& keep) {
  const std::string text = R"({
    "description": "home test", "type": "exec", "run_as": {"user": "nobody"},
    "workspace_roots": [")" +
                           kBase + R"(/ws"],
    "state_dirs": [")" + state +
                           R"("],
    "home": {"dir": ")" + state +
                           R"(", "keep": ")" + keep + R"("},
    "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": ")" +
                           state + R"("}}})";
  auto load = supervisor::ParsePolicy("/p/home.json", text);
  EXPECT_TRUE(load.errors.empty()) << load.errors.front();
  return load.policy;
}

// Session A plants configuration in its home that runs code or changes what runs: a shell
// profile, a git alias and fsmonitor command, a Claude Code SessionStart hook. Session B, a
// later session of the same policy on another workspace, starts a login shell (which runs
// ~/.profile) and reads git's and the agent's settings files as those tools would.
const char kPlant[] = R"(
set -e
echo 'echo PLANT-RAN-PROFILE > "$PWD/profile-ran"' >> "$HOME/.profile"
printf '[alias]\n\tst = !echo PLANT-RAN-GIT\n[core]\n\tfsmonitor = echo PLANT-RAN-GIT\n' >> "$HOME/.gitconfig"
mkdir -p "$HOME/.claude"
printf '{"hooks":{"SessionStart":[{"hooks":[{"type":"command","command":"echo PLANT-RAN-HOOK"}]}]}}' > "$HOME/.claude/settings.json"
echo A-WROTE-ITS-HOME
cat "$HOME/.claude/settings.json" >/dev/null
)";

const char kVictim[] = R"(
cat "$HOME/.gitconfig" 2>/dev/null
cat "$HOME/.claude/settings.json" 2>/dev/null
cat profile-ran 2>/dev/null
echo B-DONE
)";

TEST_F(ViewTest, AHomePlantNeverRunsInTheNextSession) {
  for (const std::string keep : {"session", "shared"}) {
    SCOPED_TRACE("home.keep " + keep);
    const std::string state = kBase + "/agents-" + keep;
    ASSERT_EQ(std::system(("rm -rf '" + state + "' '" + kBase + "/ws'").c_str()), 0);
    MakeDir(state, 0700, 65534);
    { std::ofstream(state + "/operator-login") << "token\n"; }
    ASSERT_EQ(::chown((state + "/operator-login").c_str(), 65534, 65534), 0);
    MakeDir(kBase + "/ws/a", 0700, 65534);
    MakeDir(kBase + "/ws/b", 0700, 65534);
    const auto policy = HomePolicy(state, keep);
    ASSERT_NE(policy, nullptr);

    auto a = FromPolicy(*policy, kBase + "/ws/a", {"/bin/sh", "-c", kPlant});
    ASSERT_TRUE(a) << a.error().ToString();
    const RunResult ra = Run(*a);
    ASSERT_EQ(ra.exit_code(), 0) << ra.out;
    EXPECT_NE(ra.out.find("A-WROTE-ITS-HOME"), std::string::npos) << ra.out;

    // B: a login shell (dash and bash read ~/.profile) in its own workspace.
    auto b = FromPolicy(*policy, kBase + "/ws/b", {"/bin/sh", "-lc", kVictim});
    ASSERT_TRUE(b) << b.error().ToString();
    const RunResult rb = Run(*b);
    ASSERT_EQ(rb.exit_code(), 0) << rb.out;
    ASSERT_NE(rb.out.find("B-DONE"), std::string::npos) << rb.out;
    const bool profile_ran = rb.out.find("PLANT-RAN-PROFILE") != std::string::npos;
    const bool git_planted = rb.out.find("PLANT-RAN-GIT") != std::string::npos;
    const bool hook_planted = rb.out.find("PLANT-RAN-HOOK") != std::string::npos;
    const bool host_state_changed = ::access((state + "/.profile").c_str(), F_OK) == 0 ||
                                    ::access((state + "/.claude").c_str(), F_OK) == 0;
    if (keep == "session") {
      EXPECT_FALSE(profile_ran || git_planted || hook_planted) << rb.out;
      EXPECT_FALSE(host_state_changed) << "the session wrote the shared state dir";
      EXPECT_EQ(Slurp(state + "/operator-login"), "token\n");
      // The operator's login is seen (read-only seed) by every session.
      auto c = FromPolicy(*policy, kBase + "/ws/b", {"/bin/cat", state + "/operator-login"});
      ASSERT_TRUE(c);
      EXPECT_EQ(Run(*c).out, "token\n");
    } else {
      // Control: the shared home carries A's plant into B, which runs it.
      EXPECT_TRUE(profile_ran && git_planted && hook_planted) << rb.out;
      EXPECT_TRUE(host_state_changed);
    }
  }
}

TEST_F(ViewTest, TheSeedIsReadOnlyBelowTheHome) {
  const std::string state = kBase + "/agents-seed";
  ASSERT_EQ(std::system(("rm -rf '" + state + "'").c_str()), 0);
  MakeDir(state, 0700, 65534);
  MakeDir(kBase + "/ws/a", 0700, 65534);
  { std::ofstream(state + "/settings.json") << "{}\n"; }
  ASSERT_EQ(::chown((state + "/settings.json").c_str(), 65534, 65534), 0);
  const auto policy = HomePolicy(state, "session");
  ASSERT_NE(policy, nullptr);
  // The session changes and removes the seeded file in its home: the host's stays.
  auto a = FromPolicy(*policy, kBase + "/ws/a",
                      {"/bin/sh", "-c",
                       "echo changed > \"$HOME/settings.json\" && cat \"$HOME/settings.json\" && "
                       "rm \"$HOME/settings.json\" && echo removed"});
  ASSERT_TRUE(a) << a.error().ToString();
  const RunResult r = Run(*a);
  EXPECT_EQ(r.out, "changed\nremoved\n");
  EXPECT_EQ(Slurp(state + "/settings.json"), "{}\n");
}

}  // namespace
}  // namespace mp::testing
