// `monkeyproofd --dev` in the test VM: the one command of README that runs the whole product
// (supervisor and API from the build tree). Its API process dies with the supervisor, even of
// SIGKILL, so a restart finds the port free; a dev daemon whose API cannot start exits
// non-zero. An agent preset names what the host lacks, with the commands that provide it, and
// runs once they are run. README's first hour (tests/e2e/first_hour.py) works as written.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <fcntl.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "control_client.h"
#include "proc_watch.h"

namespace mp::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kDaemon = MP_MONKEYPROOFD_PATH;
const std::string kCli = MP_CLI_PATH;
const std::string kSourceDir = MP_SOURCE_DIR;

// A `monkeyproofd --dev` child whose stderr the test reads.
struct DevDaemon {
  pid_t pid = -1;
  UniqueFd log;      // read end of its stderr (the API's too: it inherits it)
  std::string text;  // what was read so far

  // Reads the log until `needle` appears or `limit` passes; false on timeout or EOF.
  bool WaitForLine(const std::string& needle, milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (text.find(needle) == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{log.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[1024];
      const ssize_t n = ::read(log.get(), buf, sizeof buf);
      if (n <= 0) return false;
      text.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  // The socket path from the ready line.
  std::string Socket() const {
    const size_t at = text.find("socket=");
    if (at == std::string::npos) return "";
    return text.substr(at + 7, text.find(' ', at) - at - 7);
  }

  // Waits up to `limit` for the daemon to exit; its wait status, or -1 on timeout.
  int WaitExit(milliseconds limit) {
    int status = 0;
    const bool exited = WaitFor(
        [&] {
          const pid_t r = ::waitpid(pid, &status, WNOHANG);
          return r == pid;
        },
        limit);
    if (!exited) return -1;
    pid = -1;
    return status;
  }

  // Starts `monkeyproofd --dev EXTRA...` with its stderr on a pipe to the test.
  void Start(const std::vector<std::string>& extra = {}) {
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    std::vector<std::string> args = {kDaemon, "--dev"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    log = UniqueFd(out[0]);
  }

  DevDaemon() = default;
  DevDaemon(const DevDaemon&) = delete;
  DevDaemon& operator=(const DevDaemon&) = delete;
  ~DevDaemon() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// Children of `parent` whose command line starts with `prefix`.
std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& prefix) {
  std::vector<pid_t> out;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    const pid_t pid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
    if (pid <= 0) continue;
    const auto st = ReadProcStat(pid);
    if (st && st->ppid == parent && Cmdline(pid).rfind(prefix, 0) == 0) out.push_back(pid);
  }
  ::closedir(dir);
  return out;
}

// True when the process behind `pidfd` exits within `limit`.
bool ExitsWithin(int pidfd, milliseconds limit) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

// Session `id`'s output from offset 0 to its exit.
Result<std::string> OutputToExit(ControlClient& c, const std::string& id) {
  auto subscribed = c.Call(wire::SubscribeRequest{id, 0});
  if (!subscribed) return subscribed.error();
  std::string out;
  for (;;) {
    auto ev = c.NextEvent(std::chrono::seconds(60));
    if (!ev) return ev.error();
    if (auto* o = std::get_if<wire::OutputEvent>(&*ev)) out.append(o->data.begin(), o->data.end());
    if (std::holds_alternative<wire::ExitEvent>(*ev)) return out;
  }
}

TEST(SupervisorDevModeTest, RunsFromTheBuildTreeWithTheRepoPolicies) {
  ::mkdir("/srv", 0755);
  ::mkdir("/srv/monkeyproof", 0755);
  ::mkdir("/srv/monkeyproof/workspaces", 0755);
  ::mkdir("/srv/monkeyproof/workspaces/dev", 0777);
  ::chmod("/srv/monkeyproof/workspaces/dev", 0777);
  DevDaemon d;
  d.Start();
  ASSERT_TRUE(d.WaitForLine("ready", seconds(60))) << d.text;
  const std::string socket = d.Socket();
  ASSERT_FALSE(socket.empty()) << "no socket in the ready line: " << d.text;
  auto c = ControlClient::Connect(socket);
  ASSERT_TRUE(c) << c.error().ToString();
  wire::SpawnRequest req;
  req.task = "echo from-dev";
  req.cwd = "/srv/monkeyproof/workspaces/dev";
  req.client = "test";
  auto r = c->Call(req);
  ASSERT_TRUE(r && r->ok());
  const std::string id = std::get<wire::SessionInfo>(r->body).id;
  auto out = OutputToExit(*c, id);
  ASSERT_TRUE(out) << out.error().ToString();
  EXPECT_EQ(*out, "from-dev\n");
  ::kill(d.pid, SIGTERM);
  const int status = d.WaitExit(seconds(30));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << d.text;
}

// The control for the test below: the kernel clears the parent-death signal on a uid change
// (credentials(7)), so a child that sets it before dropping privileges outlives its parent.
// Both orders are probed with the same fork-and-kill, to show the daemon test can tell them
// apart.
bool SurvivesParentKill(bool pdeathsig_after_setuid) {
  const struct passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) return true;  // reported as a failure by the caller's expectation
  int ready[2];
  if (::pipe(ready) != 0) return true;
  const pid_t middle = ::fork();
  if (middle == 0) {
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    if (child == 0) {
      if (!pdeathsig_after_setuid) ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid) != 0 ||
          ::setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid) != 0) {
        ::_exit(1);
      }
      if (pdeathsig_after_setuid) ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      const pid_t self = ::getpid();
      (void)!::write(ready[1], &self, sizeof self);
      for (;;) ::pause();
    }
    for (;;) ::pause();
  }
  ::close(ready[1]);
  pid_t grandchild = -1;
  const bool got = ::read(ready[0], &grandchild, sizeof grandchild) == sizeof grandchild;
  ::close(ready[0]);
  UniqueFd pidfd(got ? static_cast<int>(::syscall(SYS_pidfd_open, grandchild, 0)) : -1);
  ::kill(middle, SIGKILL);
  ::waitpid(middle, nullptr, 0);
  if (!pidfd) return true;
  const bool died = ExitsWithin(pidfd.get(), seconds(1));
  if (!died) ::kill(grandchild, SIGKILL);
  return !died;
}

TEST(SupervisorDevModeTest, ControlTheParentDeathSignalIsLostWhenSetBeforeTheUidChange) {
  EXPECT_TRUE(SurvivesParentKill(/*pdeathsig_after_setuid=*/false))
      << "the kernel kept the parent-death signal across setresuid: the control shows nothing";
  EXPECT_FALSE(SurvivesParentKill(/*pdeathsig_after_setuid=*/true))
      << "a child that set the parent-death signal after setresuid outlived its parent";
}

TEST(SupervisorDevModeTest, TheApiDiesWithAKilledSupervisorAndARestartWorks) {
  DevDaemon first;
  first.Start();
  ASSERT_TRUE(first.WaitForLine("monkeyproof-api", seconds(60))) << first.text;
  ASSERT_TRUE(first.WaitForLine("listening on", seconds(60))) << first.text;
  std::vector<pid_t> api;
  ASSERT_TRUE(WaitFor(
      [&] {
        api = ChildrenNamed(first.pid, "/");
        return !api.empty();
      },
      milliseconds(5000)))
      << "no API child of the dev daemon: " << first.text;
  ASSERT_EQ(api.size(), 1u) << "the dev daemon has more than one child";
  ASSERT_NE(Cmdline(api[0]).find("monkeyproof-api"), std::string::npos) << Cmdline(api[0]);
  UniqueFd api_pidfd(static_cast<int>(::syscall(SYS_pidfd_open, api[0], 0)));
  ASSERT_TRUE(api_pidfd);

  ::kill(first.pid, SIGKILL);
  ASSERT_NE(first.WaitExit(seconds(10)), -1);
  EXPECT_TRUE(ExitsWithin(api_pidfd.get(), seconds(1)))
      << "monkeyproof-api (pid " << api[0] << ") outlived the SIGKILLed supervisor";
  ::kill(api[0], SIGKILL);  // whatever happened, the restart below needs the port

  DevDaemon second;
  second.Start();
  ASSERT_TRUE(second.WaitForLine("listening on", seconds(60)))
      << "the restarted dev daemon's API did not start: " << second.text;
  ::kill(second.pid, SIGTERM);
  const int status = second.WaitExit(seconds(30));
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "status " << status << "\n"
      << second.text;
}

TEST(SupervisorDevModeTest, ADevDaemonWhoseApiCannotStartExitsNonZero) {
  // The test holds the port, as a leftover API or another server would.
  UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(holder);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string listen = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  DevDaemon d;
  d.Start({"--api-listen", listen});
  const int status = d.WaitExit(seconds(60));
  ASSERT_NE(status, -1) << "the dev daemon kept running without its API: " << d.text;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0)
      << "a dev daemon whose API failed exited with status " << status;
  d.WaitForLine("\n", milliseconds(100));  // drain what is left for the message below
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(d.log.get(), buf, sizeof buf)) > 0) d.text.append(buf, static_cast<size_t>(n));
  EXPECT_NE(d.text.find("monkeyproof-api exited"), std::string::npos) << d.text;
}

// A session of an earlier run writes its default workspace (it belongs to the session's user).
// It plants a symlink there; a policy whose default workspace lies below that symlink must not
// make dev mode (root) create a directory where the symlink points and give it to that user.
TEST(SupervisorDevModeTest, DefaultWorkspacesAreNotCreatedThroughAPlantedSymlink) {
  const std::string base = "/var/tmp/mp-dev-ws";
  const std::string root = base + "/ws";
  const std::string shared = root + "/default";       // policy exec's default workspace
  const std::string planted = shared + "/a";          // the session's symlink, to /etc
  const std::string victim = "/etc/mp-dev-ws-pwned";  // where root would create b's
  std::error_code ignored;
  std::filesystem::remove_all(base, ignored);  // does not follow the planted symlink
  std::filesystem::remove_all(victim, ignored);
  ASSERT_EQ(::mkdir(base.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((base + "/policies").c_str(), 0755), 0);
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  ASSERT_EQ(::mkdir(shared.c_str(), 0755), 0);
  ASSERT_EQ(::chown(shared.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  // The plant, made as the session's user.
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid) != 0 ||
        ::setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid) != 0) {
      ::_exit(1);
    }
    ::_exit(::symlink("/etc", planted.c_str()) == 0 ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the plant failed: " << status;
  // Control: the plant works, a path-following creation of b's workspace would land in /etc.
  char resolved[PATH_MAX];
  ASSERT_NE(::realpath((planted + "/..").c_str(), resolved), nullptr);
  ASSERT_STREQ(resolved, "/") << "the symlink does not lead out of the workspace";
  ASSERT_NE(::realpath(planted.c_str(), resolved), nullptr);
  ASSERT_STREQ(resolved, "/etc");

  auto policy = [&](const std::string& name, const std::string& default_workspace) {
    const std::string text = R"({"description": "dev ws test", "type": "exec",
      "run_as": {"user": "nobody"}, "workspace_roots": [")" +
                             root + R"("],
      "default_workspace": ")" +
                             default_workspace + R"("})";
    FILE* f = std::fopen((base + "/policies/" + name + ".json").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  policy("exec", shared);
  policy("b", planted + "/mp-dev-ws-pwned");

  DevDaemon d;
  d.Start({"--no-api", "--policies", base + "/policies"});
  const int exit_status = d.WaitExit(seconds(60));
  ASSERT_NE(exit_status, -1) << "the dev daemon started despite the planted symlink: " << d.text;
  d.WaitForLine("\n", milliseconds(100));
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(d.log.get(), buf, sizeof buf)) > 0) d.text.append(buf, static_cast<size_t>(n));
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) != 0) << exit_status;
  struct stat st {};
  EXPECT_NE(::lstat(victim.c_str(), &st), 0)
      << victim << " was created through the symlink (owner uid " << st.st_uid << ")";
  EXPECT_NE(d.text.find("is a symlink or not a directory"), std::string::npos) << d.text;
  EXPECT_NE(d.text.find(planted), std::string::npos)
      << "the error does not name the path: " << d.text;
  std::filesystem::remove_all(base, ignored);
  std::filesystem::remove_all(victim, ignored);
}

// Runs `argv` to its end (at most `limit`); its wait status (-1 on timeout) and what it wrote
// on stdout and stderr, which is echoed to the test's stdout.
std::pair<int, std::string> RunCaptured(const std::vector<std::string>& args, seconds limit) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return {-1, "pipe2 failed"};
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::setpgid(0, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  UniqueFd r(out[0]);
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{r.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 1000))) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(r.get(), buf, sizeof buf);
    if (n <= 0) break;
    std::fwrite(buf, 1, static_cast<size_t>(n), stdout);
    text.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return {-1, text};
    }
    ::waitpid(pid, &status, 0);
  }
  return {status, text};
}

std::vector<std::string> FirstHour(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   kSourceDir + "/tests/e2e/first_hour.py",
                                   "--daemon",
                                   kDaemon,
                                   "--cli",
                                   kCli,
                                   "--source",
                                   kSourceDir};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// README's two commands start the product (`monkeyproofd --dev`, here as scripts/run.sh runs
// it); then the curl example and the CLI examples of README's block run as written, with the
// token dev mode prints, and the CLI's output matches docs/cli.md (first_hour.py).
TEST(SupervisorDevModeTest, TheFirstHourOfTheReadmeWorksAsWritten) {
  ASSERT_FALSE(kCli.empty()) << "the CLI (src/cli) is not built: the walk needs it";
  const auto [status, out] = RunCaptured(FirstHour(), seconds(600));
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "first_hour.py: status " << status << " (its output above says why)";
  EXPECT_NE(out.find("checks passed"), std::string::npos);
}

// The control: the same walk with one README example broken (the default workspace's file
// written to / instead, which the sandbox keeps read-only) fails, naming that line.
TEST(SupervisorDevModeTest, ControlTheFirstHourFailsOnABrokenExample) {
  ASSERT_FALSE(kCli.empty()) << "the CLI (src/cli) is not built: the walk needs it";
  const auto [status, out] = RunCaptured(
      FirstHour({"--mutate", "'pwd; echo hi > note'", "'pwd; echo hi > /note'"}), seconds(600));
  EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1)
      << "first_hour.py with a broken example: status " << status;
  EXPECT_NE(out.find("FAILED (first_hour): run without cwd did not"), std::string::npos) << out;
  EXPECT_NE(out.find("the documented line: monkeyproof run -- 'pwd; echo hi > /note'"),
            std::string::npos);
}

// Dev mode adds no user, state dir or agent CLI to the host: at start it says which presets
// lack what and what to run, and a session under such a preset is refused with host_setup
// naming the same commands. Running exactly those commands (and putting a `claude` on the
// preset's PATH, a stand-in for the real CLI) makes the preset run: the message is the remedy.
TEST(SupervisorDevModeTest, AnAgentPresetNamesWhatTheHostLacksAndRunsOnceThatIsDone) {
  const std::string stub = "/usr/local/bin/claude";
  struct stat st {};
  ASSERT_NE(::stat(stub.c_str(), &st), 0) << stub << " exists already; the test needs it absent";
  DevDaemon d;
  d.Start({"--no-api"});
  ASSERT_TRUE(d.WaitForLine("ready", seconds(60))) << d.text;
  EXPECT_NE(d.text.find("presets cannot run on this host yet"), std::string::npos) << d.text;
  EXPECT_NE(d.text.find("the command \"claude\" is not installed"), std::string::npos) << d.text;
  auto c = ControlClient::Connect(d.Socket());
  ASSERT_TRUE(c) << c.error().ToString();
  wire::SpawnRequest req;
  req.type = wire::SessionType::kPrint;
  req.preset = "claude";
  req.task = "hello";
  req.cwd = "/var/lib/monkeyproof/workspaces/default";
  req.client = "test";
  auto refused = c->Call(req);
  ASSERT_TRUE(refused);
  auto* error = std::get_if<wire::ErrorBody>(&refused->body);
  ASSERT_NE(error, nullptr) << "the claude preset started on a host without claude";
  EXPECT_EQ(error->code, wire::ErrorCode::kHostSetup);
  EXPECT_EQ(error->message.rfind("policy \"claude\" cannot run on this host yet: ", 0), 0u)
      << error->message;
  EXPECT_NE(error->message.find("install it on the host (docs/policies.md"), std::string::npos)
      << error->message;
  if (::getpwnam("monkeyproof-session") == nullptr) {
    EXPECT_NE(error->message.find("`useradd --system --user-group --no-create-home --home-dir "
                                  "/nonexistent --shell /usr/sbin/nologin monkeyproof-session`"),
              std::string::npos)
        << error->message;
  }
  // Run what the message says (each `command`), then install the stand-in CLI.
  const std::regex quoted("`([^`]+)`");
  int ran = 0;
  for (std::sregex_iterator it(error->message.begin(), error->message.end(), quoted), end;
       it != end; ++it) {
    const std::string command = (*it)[1];
    const auto [status, out] = RunCaptured({"/bin/sh", "-c", command}, seconds(60));
    ASSERT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the remedy `" << command << "` failed: " << out;
    ++ran;
  }
  std::printf("ran the %d commands the error named\n", ran);
  // The preset's gateway key: an operator pastes the real one (docs/policies.md, "Installing
  // the agents and their credentials"); a stand-in here, in the VM's throwaway /etc. Without
  // it the spawn is refused with host_setup naming the file.
  ASSERT_EQ(std::system("mkdir -p -m 0700 /etc/monkeyproof/credentials && "
                        "echo stand-in-anthropic-key > /etc/monkeyproof/credentials/"
                        "anthropic-api-key && chmod 0600 /etc/monkeyproof/credentials/"
                        "anthropic-api-key"),
            0);
  {
    FILE* f = std::fopen(stub.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("#!/bin/sh\necho \"stand-in claude: $*\"\n", f);
    std::fclose(f);
    ASSERT_EQ(::chmod(stub.c_str(), 0755), 0);
  }
  struct Unlink {
    std::string path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_stub{stub};
  auto started = c->Call(req);
  ASSERT_TRUE(started);
  auto* refused_again = std::get_if<wire::ErrorBody>(&started->body);
  ASSERT_EQ(refused_again, nullptr)
      << "still refused after the remedies: " << refused_again->message;
  const std::string id = std::get<wire::SessionInfo>(started->body).id;
  auto out = OutputToExit(*c, id);
  ASSERT_TRUE(out) << out.error().ToString();
  EXPECT_NE(out->find("stand-in claude: --print"), std::string::npos) << *out;
  EXPECT_NE(out->find(" hello"), std::string::npos) << *out;
}

}  // namespace
}  // namespace mp::testing
