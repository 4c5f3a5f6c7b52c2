// monkeyproof-api end to end in the test VM: the real supervisor (monkeyproofd, root) and the
// real API (monkeyproof-api, as its own unprivileged user) talking over the control socket,
// driven from outside through HTTP and WebSocket by the scripts in tests/e2e (curl, Python):
// the original server's recipes, streaming with resume, an API crash and a supervisor restart
// mid-stream, auth and request limits, 100 WebSocket clients, and the CLI.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace mp::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kDaemonBin = MP_MONKEYPROOFD_PATH;
const std::string kApiBin = MP_API_PATH;
const std::string kCliBin = MP_CLI_PATH;  // empty when the CLI target does not exist
const std::string kE2eDir = MP_E2E_DIR;
// Debian's interpreter, which has python3-websockets (scripts/install-deps.sh).
const std::string kPython = "/usr/bin/python3";

const std::string kBase = "/var/tmp/mp-api-e2e";
const std::string kWorkspace = kBase + "/ws";
const std::string kSocket = kBase + "/run/control.sock";
const std::string kTokenFile = kBase + "/api-token";
const std::string kCgroup = "/sys/fs/cgroup/mp-api-e2e";
const std::string kApiUser = "mp-e2e-api";
constexpr uint16_t kPort = 39281;

// exec: no output-rate ceiling and a transcript that holds a whole 64 MiB stream.
const char kExecPolicy[] = R"({
  "description": "e2e exec", "type": "exec", "command": [],
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-api-e2e/ws"],
  "default_workspace": "/var/tmp/mp-api-e2e/ws",
  "limits": {"memory_max_bytes": 536870912, "pids_max": 256},
  "deadlines": {"wall_seconds": 900, "idle_seconds": 600},
  "output": {"ring_bytes": 1048576, "transcript_max_bytes": 134217728,
             "max_rate_bytes_per_second": 0},
  "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}},
  "request_env": {"allow": ["LANG", "MP_E2E"]}
})";

const char kPrintPolicy[] = R"({
  "description": "e2e print", "type": "print",
  "command": ["/bin/echo", "printed:"], "bypasses_agent_permissions": false,
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-api-e2e/ws"],
  "default_workspace": "/var/tmp/mp-api-e2e/ws",
  "env": {"set": {"PATH": "/usr/bin:/bin"}}
})";

// A print preset whose transcript keeps only 1 MiB: larger output leaves a gap at the start.
const char kCappedPolicy[] = R"({
  "description": "e2e print with a small transcript", "type": "print",
  "command": ["/bin/sh", "-c"], "bypasses_agent_permissions": false,
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-api-e2e/ws"],
  "default_workspace": "/var/tmp/mp-api-e2e/ws",
  "output": {"ring_bytes": 65536, "transcript_max_bytes": 1048576,
             "max_rate_bytes_per_second": 0},
  "env": {"set": {"PATH": "/usr/bin:/bin"}}
})";

const char kShellPolicy[] = R"({
  "description": "e2e interactive shell", "type": "interactive",
  "command": ["/bin/sh", "-c"], "bypasses_agent_permissions": false,
  "run_as": {"user": "nobody"},
  "workspace_roots": ["/var/tmp/mp-api-e2e/ws"],
  "default_workspace": "/var/tmp/mp-api-e2e/ws",
  "env": {"set": {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TERM": "dumb"}}
})";

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The last `n` bytes of a log, for failure messages.
std::string Tail(const std::string& path, size_t n = 3000) {
  std::string text = ReadFile(path);
  return text.size() > n ? "..." + text.substr(text.size() - n) : text;
}

// The text around the first `needle` in `text`.
std::string Around(const std::string& text, const std::string& needle) {
  const size_t at = text.find(needle);
  if (at == std::string::npos) return "";
  const size_t from = at > 400 ? at - 400 : 0;
  return text.substr(from, 800);
}

std::string RandomHex(size_t bytes) {
  std::string out;
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  static const char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned char>(urandom.get());
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// ---- A tiny blocking HTTP/1.1 client (Connection: close), enough for readiness checks and
// the supervisor-restart test. The scripts do the thorough HTTP work.

struct HttpReply {
  int status = 0;                              // 0: no answer (connect failed, closed early)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

HttpReply Http(const std::string& method, const std::string& path, const std::string& token,
               const std::string& body = "") {
  HttpReply reply;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return reply;
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(kPort);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return reply;
  }
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty()) request += "Content-Type: application/json\r\n";
  request += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  request += body;
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return reply;
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos) return reply;
  reply.status = std::atoi(raw.c_str() + 9);
  std::istringstream head(raw.substr(0, head_end));
  std::string line;
  std::getline(head, line);
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    reply.headers[name] = line.substr(v);
  }
  reply.body = raw.substr(head_end + 4);  // the API answers with Content-Length, not chunked
  return reply;
}

// A JSON string member's value, for the few fields the C++ side reads ("id", "code").
std::string JsonString(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":\"";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  const size_t start = at + needle.size();
  return json.substr(start, json.find('"', start) - start);
}

// ---- Child processes.

// A child in its own process group, with its stderr (and stdout unless piped) going to `log`
// or inherited. Kill() ends the whole group.
class Child {
 public:
  struct Options {
    std::vector<std::string> argv;
    std::vector<std::string> env;  // replaces the environment when non-empty
    std::string log;               // stdout and stderr appended here; empty: inherited
    bool pipe_stdio = false;       // stdin and stdout become pipes to the test
  };

  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { Kill(SIGKILL); }

  bool Start(const Options& o) {
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if (o.pipe_stdio && (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)) {
      return false;
    }
    std::vector<char*> argv, envp;
    for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : o.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      ::setpgid(0, 0);
      const int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(o.pipe_stdio ? in[0] : devnull, 0);
      if (!o.log.empty()) {
        const int fd = ::open(o.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(fd, 2);
        if (!o.pipe_stdio) ::dup2(fd, 1);
      }
      if (o.pipe_stdio) ::dup2(out[1], 1);
      if (o.env.empty()) {
        ::execvp(argv[0], argv.data());
      } else {
        ::execvpe(argv[0], argv.data(), envp.data());
      }
      std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);
    if (o.pipe_stdio) {
      ::close(in[0]);
      ::close(out[1]);
      stdin_ = in[1];
      stdout_ = out[0];
    }
    return true;
  }

  // The next line of the child's stdout (pipe_stdio), without the newline; nullopt on EOF or
  // timeout. Each line read is echoed to the test's stdout.
  std::optional<std::string> ReadLine(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const size_t nl = pending_.find('\n');
      if (nl != std::string::npos) {
        std::string line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        std::printf("  | %s\n", line.c_str());
        std::fflush(stdout);
        return line;
      }
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (stdout_ < 0 || left.count() <= 0) return std::nullopt;
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(stdout_, buf, sizeof buf);
      if (n <= 0) {
        ::close(stdout_);
        stdout_ = -1;
        if (!pending_.empty()) pending_ += '\n';
        continue;
      }
      pending_.append(buf, static_cast<size_t>(n));
    }
  }

  void WriteLine(const std::string& line) {
    if (stdin_ < 0) return;
    const std::string text = line + "\n";
    (void)!::write(stdin_, text.data(), text.size());
  }

  // Waits for the exit (echoing piped output); returns the wait status, or -1 after `timeout`
  // (the group is then killed).
  int Wait(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (pid_ > 0) {
      if (stdout_ >= 0) {
        (void)ReadLine(milliseconds(100));
      } else {
        ::usleep(20 * 1000);
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        while (ReadLine(milliseconds(0))) {
        }
        pid_ = -1;
        CloseFds();
        return status;
      }
      if (Clock::now() > deadline) {
        Kill(SIGKILL);
        return -1;
      }
    }
    return -1;
  }

  void Kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(-pid_, sig);
    ::kill(pid_, sig);
    ::waitpid(pid_, nullptr, 0);
    if (sig != SIGKILL) ::kill(-pid_, SIGKILL);  // stragglers of the group
    pid_ = -1;
    CloseFds();
  }

  // Signals the child alone and waits; returns the wait status.
  int Stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    CloseFds();
    return status;
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  void CloseFds() {
    if (stdin_ >= 0) ::close(stdin_);
    if (stdout_ >= 0) ::close(stdout_);
    stdin_ = stdout_ = -1;
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  std::string pending_;
};

std::string DescribeStatus(int status) {
  if (status == -1) return "timed out (killed)";
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

// ---- The stack: monkeyproofd as root, monkeyproof-api as kApiUser.

struct ApiAccount {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
  std::string how;  // created / existing, for the log
};

// A dedicated user for the API. The guest's /etc lives in the VM's tmpfs overlay, so useradd
// changes nothing on the host; where /etc is read-only, an existing unprivileged account that is
// not the sessions' `nobody` stands in.
std::optional<ApiAccount> EnsureApiAccount(std::string* why) {
  auto found = [](const char* name, const std::string& how) -> std::optional<ApiAccount> {
    const passwd* pw = ::getpwnam(name);
    if (pw == nullptr || pw->pw_uid == 0) return std::nullopt;
    return ApiAccount{pw->pw_uid, pw->pw_gid, name, how};
  };
  if (auto a = found(kApiUser.c_str(), "existing")) return a;
  if (::access("/etc/passwd", W_OK) == 0) {
    const std::string cmd =
        "useradd --system --user-group --no-create-home --shell "
        "/usr/sbin/nologin " +
        kApiUser + " 2>&1";
    const int rc = std::system(cmd.c_str());
    if (auto a = found(kApiUser.c_str(), "created with useradd")) return a;
    *why = "useradd " + kApiUser + " failed (" + std::to_string(rc) + ")";
  }
  for (const char* fallback : {"daemon", "bin", "sys"}) {
    if (auto a = found(fallback, "fallback: /etc is not writable")) return a;
  }
  *why += "; no unprivileged account other than nobody exists";
  return std::nullopt;
}

class Stack {
 public:
  bool Prepare(std::string* why) {
    const auto account = EnsureApiAccount(why);
    if (!account) return false;
    account_ = *account;
    std::printf("api user: %s uid=%u gid=%u (%s)\n", account_.name.c_str(), account_.uid,
                account_.gid, account_.how.c_str());
    if (std::system(("rm -rf " + kBase).c_str()) != 0) {
      *why = "rm -rf " + kBase;
      return false;
    }
    ::mkdir(kBase.c_str(), 0755);
    ::mkdir(kWorkspace.c_str(), 0777);
    ::chmod(kWorkspace.c_str(), 0777);
    ::mkdir((kBase + "/policies").c_str(), 0755);
    WriteFile(kBase + "/policies/exec.json", kExecPolicy);
    WriteFile(kBase + "/policies/printer.json", kPrintPolicy);
    WriteFile(kBase + "/policies/shell.json", kShellPolicy);
    WriteFile(kBase + "/policies/capped.json", kCappedPolicy);
    WriteFile(kBase + "/monkeyproof.conf",
              "api_user = " + account_.name + "\nkill_grace_ms = 500\nmax_sessions = 250\n");
    // The API's own config (so that no file on the host counts): a small WebSocket outbox, so
    // that slow clients reach the `lagged` path without needing huge outputs.
    WriteFile(kBase + "/api.conf", "ws_outbox_bytes = 256K\n");
    token_ = RandomHex(24);
    WriteFile(kTokenFile, "# e2e token\n" + token_ + "\n");
    if (::chown(kTokenFile.c_str(), 0, account_.gid) != 0 || ::chmod(kTokenFile.c_str(), 0640)) {
      *why = "chown/chmod " + kTokenFile + ": " + std::strerror(errno);
      return false;
    }
    return true;
  }

  void StartDaemon() {
    Child::Options o;
    o.argv = {kDaemonBin,
              "--config",
              kBase + "/monkeyproof.conf",
              "--state-dir",
              kBase + "/state",
              "--socket",
              kSocket,
              "--cgroup-root",
              kCgroup,
              "--policies",
              kBase + "/policies",
              "--audit-log",
              kBase + "/audit.log"};
    o.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"};
    o.log = kBase + "/daemon.log";
    daemon_ = std::make_unique<Child>();
    daemon_->Start(o);
  }

  void StartApi() {
    Child::Options o;
    o.argv = {"setpriv",
              "--reuid=" + std::to_string(account_.uid),
              "--regid=" + std::to_string(account_.gid),
              "--init-groups",
              "--",
              kApiBin,
              "--config",
              kBase + "/api.conf",
              "--listen",
              "127.0.0.1:" + std::to_string(kPort),
              "--control-socket",
              kSocket,
              "--token-file",
              kTokenFile};
    o.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"};
    o.log = kBase + "/api.log";
    api_ = std::make_unique<Child>();
    api_->Start(o);
  }

  // Polls GET /readyz until 200; returns the seconds it took, or -1.
  double WaitReady(seconds limit) {
    const auto start = Clock::now();
    while (SecondsSince(start) < static_cast<double>(limit.count())) {
      if (Http("GET", "/readyz", token_).status == 200) return SecondsSince(start);
      if (api_ && ::waitpid(api_->pid(), nullptr, WNOHANG) == api_->pid()) return -1;
      ::usleep(100 * 1000);
    }
    return -1;
  }

  int StopApi(int sig) { return api_ ? api_->Stop(sig) : -1; }
  int StopDaemon(int sig) { return daemon_ ? daemon_->Stop(sig) : -1; }

  [[nodiscard]] std::string Logs() const {
    return "\n--- monkeyproofd log:\n" + Tail(kBase + "/daemon.log") +
           "\n--- monkeyproof-api log:\n" + Tail(kBase + "/api.log");
  }
  [[nodiscard]] const std::string& token() const { return token_; }
  [[nodiscard]] const ApiAccount& account() const { return account_; }
  [[nodiscard]] pid_t api_pid() const { return api_ ? api_->pid() : -1; }
  [[nodiscard]] pid_t daemon_pid() const { return daemon_ ? daemon_->pid() : -1; }

  // The environment the scripts get.
  [[nodiscard]] std::vector<std::string> ScriptEnv() const {
    return {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG=C.UTF-8",
            "HOME=/root",
            "PYTHON=" + kPython,
            "PYTHONUNBUFFERED=1",
            "MP_API_URL=http://127.0.0.1:" + std::to_string(kPort),
            "MP_API_TOKEN=" + token_,
            "MP_CLI=" + kCliBin,
            "MP_E2E_WORKSPACE=" + kWorkspace};
  }

 private:
  ApiAccount account_;
  std::string token_;
  std::unique_ptr<Child> daemon_;
  std::unique_ptr<Child> api_;
};

// Processes still running as `uid`, or running one of our two binaries.
std::vector<std::string> StrayProcesses(uid_t api_uid) {
  std::vector<std::string> out;
  DIR* d = ::opendir("/proc");
  while (const dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string dir = std::string("/proc/") + e->d_name;
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) continue;
    char exe[4096] = {};
    const ssize_t n = ::readlink((dir + "/exe").c_str(), exe, sizeof exe - 1);
    const std::string path = n > 0 ? std::string(exe, static_cast<size_t>(n)) : "";
    if (st.st_uid == api_uid || st.st_uid == 65534 || path == kDaemonBin || path == kApiBin) {
      std::string cmdline = ReadFile(dir + "/cmdline");
      for (char& c : cmdline) c = c == '\0' ? ' ' : c;
      out.push_back(std::string(e->d_name) + " uid=" + std::to_string(st.st_uid) + " " + cmdline);
    }
  }
  if (d) ::closedir(d);
  return out;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "  " + x + "\n";
  return s;
}

class ApiE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto start = Clock::now();
    stack_ = new Stack();
    std::string why;
    if (!stack_->Prepare(&why)) {
      setup_error_ = new std::string("setup: " + why);
      return;
    }
    stack_->StartDaemon();
    stack_->StartApi();
    const double ready = stack_->WaitReady(seconds(90));
    if (ready < 0) {
      setup_error_ = new std::string("the API never answered /readyz with 200" + stack_->Logs());
      return;
    }
    std::printf("stack ready in %.1f s (readyz after %.1f s)\n", SecondsSince(start), ready);
  }
  static void TearDownTestSuite() {
    // Normally the last test has stopped both already; this is the safety net.
    stack_->StopApi(SIGKILL);
    stack_->StopDaemon(SIGTERM);
    delete stack_;
    stack_ = nullptr;
  }
  void SetUp() override {
    if (setup_error_ != nullptr) GTEST_FAIL() << *setup_error_;
    daemon_log_start_ = ReadFile(kBase + "/daemon.log").size();
    api_log_start_ = ReadFile(kBase + "/api.log").size();
  }
  // The link between the two must hold unless a test takes the supervisor away: a dropped
  // link fails every request in flight with 503 for every client.
  void TearDown() override {
    const std::string daemon = ReadFile(kBase + "/daemon.log").substr(daemon_log_start_);
    const std::string api = ReadFile(kBase + "/api.log").substr(api_log_start_);
    EXPECT_EQ(daemon.find("outbox over its hard limit"), std::string::npos)
        << "monkeyproofd closed the API's connection:\n"
        << Around(daemon, "outbox over its hard limit");
    if (!link_may_drop_) {
      EXPECT_EQ(api.find("supervisor link lost"), std::string::npos)
          << "the API lost its supervisor link during the test:\n"
          << api.substr(0, 2000);
    }
  }

  // Runs a script (its output goes to the test's stdout) and expects exit status 0.
  static void RunScript(const std::vector<std::string>& argv, seconds limit) {
    const auto start = Clock::now();
    Child c;
    Child::Options o;
    o.argv = argv;
    o.env = stack_->ScriptEnv();
    ASSERT_TRUE(c.Start(o));
    const int status = c.Wait(limit);
    // "ws_client.py stream stdin": the script's name and its arguments.
    std::string name;
    for (size_t i = 1; i < argv.size(); ++i) {
      name += (i == 1 ? argv[i].substr(argv[i].rfind('/') + 1) : " " + argv[i]);
    }
    std::printf("%s: %s after %.1f s\n", name.c_str(), DescribeStatus(status).c_str(),
                SecondsSince(start));
    EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << name << ": " << DescribeStatus(status) << " (its output above says why)"
        << stack_->Logs();
  }
  static std::string Script(const std::string& name) { return kE2eDir + "/" + name; }

  static Stack* stack_;
  static std::string* setup_error_;
  size_t daemon_log_start_ = 0;
  size_t api_log_start_ = 0;
  bool link_may_drop_ = false;  // the test stops the supervisor or the API itself
};
Stack* ApiE2eTest::stack_ = nullptr;
std::string* ApiE2eTest::setup_error_ = nullptr;

// 1. The original's curl recipes, answered in the original's shapes.
TEST_F(ApiE2eTest, CurlRecipes) { RunScript({"bash", Script("curl_recipes.sh")}, seconds(400)); }

// 2. A 64 MiB stream over WebSocket with a forced disconnect and resume (and GET /output);
// stdin (text, binary, more than the supervisor buffers), signal, resize, DELETE; the original
// client snippet; UTF-8 split across reads; gaps from the transcript cap.
TEST_F(ApiE2eTest, WebSocketStreamResumeAndStdin) {
  RunScript({kPython, Script("ws_client.py"), "stream", "stdin", "snippet", "utf8", "gaps",
             "--bytes", "67108864"},
            seconds(600));
}

// 3. The API dies (SIGKILL) mid-stream and comes back; the client resumes with ?since and
// gets every byte.
TEST_F(ApiE2eTest, ApiKilledAndRestartedMidStream) {
  const auto start = Clock::now();
  Child client;
  Child::Options o;
  o.argv = {kPython, Script("ws_client.py"), "api-restart", "--bytes", "8388608"};
  o.env = stack_->ScriptEnv();
  o.pipe_stdio = true;
  ASSERT_TRUE(client.Start(o));
  bool mid = false;
  while (auto line = client.ReadLine(seconds(120))) {
    if (line->rfind("MIDSTREAM", 0) == 0) {
      mid = true;
      break;
    }
  }
  ASSERT_TRUE(mid) << "the client never reported being mid-stream" << stack_->Logs();
  const pid_t old_pid = stack_->api_pid();
  const int status = stack_->StopApi(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);
  std::printf("monkeyproof-api %d killed with SIGKILL\n", old_pid);
  client.WriteLine("killed");
  stack_->StartApi();
  const double ready = stack_->WaitReady(seconds(60));
  ASSERT_GE(ready, 0) << "the restarted API never became ready" << stack_->Logs();
  std::printf("restarted API ready after %.1f s\n", ready);
  client.WriteLine("restarted");
  const int rc = client.Wait(seconds(240));
  EXPECT_TRUE(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0)
      << "api-restart client: " << DescribeStatus(rc) << stack_->Logs();
  std::printf("api-restart: %.1f s\n", SecondsSince(start));
}

// 5. Auth on every route (WebSocket upgrade included), and malformed or oversized requests.
TEST_F(ApiE2eTest, AuthOnEveryRouteAndRequestLimits) {
  RunScript({kPython, Script("http_edges.py")}, seconds(300));
}

// 6. 100 WebSocket clients on one session each get the whole output.
TEST_F(ApiE2eTest, HundredWebSocketClientsGetTheWholeOutput) {
  RunScript({kPython, Script("ws_client.py"), "fanout", "--clients", "100", "--bytes", "524288"},
            seconds(300));
}

// 7. The CLI against the real stack.
TEST_F(ApiE2eTest, Cli) {
  ASSERT_FALSE(kCliBin.empty()) << "the monkeyproof CLI target is not in this build";
  ASSERT_EQ(::access(kCliBin.c_str(), X_OK), 0) << kCliBin << " was not built";
  RunScript({"bash", Script("cli_check.sh")}, seconds(300));
}

// 4. While monkeyproofd is down the API answers 503 `unavailable`; once it is back the API
// reconnects by itself.
TEST_F(ApiE2eTest, SupervisorRestartGives503ThenReconnects) {
  link_may_drop_ = true;
  const std::string& token = stack_->token();
  auto created = Http("POST", "/sessions", token, R"({"task":"sleep 600","owner":"restart"})");
  ASSERT_EQ(created.status, 201) << created.body << stack_->Logs();
  const std::string id = JsonString(created.body, "id");
  ASSERT_FALSE(id.empty()) << created.body;
  // A WebSocket client stays attached through the outage and learns how the session ended.
  Child watcher;
  Child::Options o;
  o.argv = {kPython,    Script("ws_client.py"), "wait-exit", "--session", id,
            "--reason", "supervisor_restart"};
  o.env = stack_->ScriptEnv();
  o.pipe_stdio = true;
  ASSERT_TRUE(watcher.Start(o));
  std::optional<std::string> line;
  while ((line = watcher.ReadLine(seconds(60))) && *line != "CONNECTED") {
  }
  ASSERT_TRUE(line) << "the WebSocket watcher never connected" << stack_->Logs();

  const int status = stack_->StopDaemon(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(status)) << DescribeStatus(status);
  const auto down = Clock::now();
  // The API notices at once (the socket closes); give it a moment under emulation.
  HttpReply ready;
  for (int i = 0; i < 100; ++i) {
    ready = Http("GET", "/readyz", token);
    if (ready.status == 503) break;
    ::usleep(100 * 1000);
  }
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_EQ(ready.headers["retry-after"], "1");
  EXPECT_NE(ready.body.find("\"ready\":false"), std::string::npos) << ready.body;
  for (const auto& [method, path, body] :
       std::vector<std::array<std::string, 3>>{{"GET", "/sessions", ""},
                                               {"GET", "/sessions/" + id, ""},
                                               {"POST", "/sessions", R"({"task":"true"})"},
                                               {"GET", "/policies", ""},
                                               {"GET", "/sessions/" + id + "/transcript", ""},
                                               {"GET", "/sessions/" + id + "/ws", ""},
                                               {"DELETE", "/sessions/" + id, ""}}) {
    auto r = Http(method, path, token, body);
    EXPECT_EQ(r.status, 503) << method << " " << path << ": " << r.body;
    EXPECT_EQ(JsonString(r.body, "code"), "unavailable") << method << " " << path << ": " << r.body;
    EXPECT_EQ(r.headers["retry-after"], "1") << method << " " << path;
  }
  // The API itself stays up; auth still applies.
  EXPECT_EQ(Http("GET", "/livez", token).status, 200);
  EXPECT_EQ(Http("GET", "/health", token).status, 200);
  EXPECT_EQ(Http("GET", "/metrics", token).status, 200);
  auto version = Http("GET", "/version", token);
  EXPECT_EQ(version.status, 200) << version.body;
  EXPECT_EQ(Http("GET", "/readyz", "").status, 401);

  stack_->StartDaemon();
  const auto restarted = Clock::now();
  const double ready_after = stack_->WaitReady(seconds(60));
  ASSERT_GE(ready_after, 0) << "the API did not reconnect to the restarted supervisor"
                            << stack_->Logs();
  std::printf("supervisor down for %.1f s; API ready %.1f s after the restart\n",
              std::chrono::duration<double>(restarted - down).count(), ready_after);
  auto got = Http("GET", "/sessions/" + id, token);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(JsonString(got.body, "endReason"), "supervisor_restart") << got.body;
  EXPECT_EQ(JsonString(got.body, "status"), "killed") << got.body;
  // And it works again end to end.
  auto again = Http("POST", "/sessions", token, R"({"task":"echo back"})");
  EXPECT_EQ(again.status, 201) << again.body;
  const int watched = watcher.Wait(seconds(120));
  EXPECT_TRUE(watched != -1 && WIFEXITED(watched) && WEXITSTATUS(watched) == 0)
      << "the WebSocket watcher: " << DescribeStatus(watched) << stack_->Logs();
}

// Last: both processes stop cleanly and leave nothing behind.
TEST_F(ApiE2eTest, ShutdownLeavesNoProcess) {
  link_may_drop_ = true;
  // A running session, so that the supervisor has something to end.
  auto created = Http("POST", "/sessions", stack_->token(), R"({"task":"sleep 600"})");
  EXPECT_EQ(created.status, 201) << created.body;
  const int api = stack_->StopApi(SIGTERM);
  EXPECT_TRUE(WIFEXITED(api) && WEXITSTATUS(api) == 0)
      << "monkeyproof-api on SIGTERM: " << DescribeStatus(api) << stack_->Logs();
  const int daemon = stack_->StopDaemon(SIGTERM);
  EXPECT_TRUE(WIFEXITED(daemon) && WEXITSTATUS(daemon) == 0)
      << "monkeyproofd on SIGTERM: " << DescribeStatus(daemon) << stack_->Logs();
  std::vector<std::string> strays;
  const auto deadline = Clock::now() + seconds(5);
  do {
    strays = StrayProcesses(stack_->account().uid);
    if (strays.empty()) break;
    ::usleep(100 * 1000);
  } while (Clock::now() < deadline);
  EXPECT_TRUE(strays.empty()) << "left running:\n" << Join(strays);
  int leaves = 0;
  if (DIR* d = ::opendir(kCgroup.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_type == DT_DIR && e->d_name[0] == 's' && e->d_name[1] == '-') ++leaves;
    }
    ::closedir(d);
  }
  EXPECT_EQ(leaves, 0) << "session cgroups left under " << kCgroup;
}

}  // namespace
}  // namespace mp::testing
