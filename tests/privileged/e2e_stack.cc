#include "e2e_stack.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "proc_watch.h"

namespace mp::testing {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Debian's interpreter, which has python3-websockets (scripts/install-deps.sh).
constexpr char kPython[] = "/usr/bin/python3";

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string ReadFile(const std::string& path) { return ReadWholeFile(path).value_or(""); }

std::string Tail(const std::string& path, size_t n) {
  std::string text = ReadFile(path);
  return text.size() > n ? "..." + text.substr(text.size() - n) : text;
}

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

std::string DescribeStatus(int status) {
  if (status == -1) return "timed out (killed)";
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "  " + x + "\n";
  return s;
}

HttpReply HttpTo(uint16_t port, const std::string& method, const std::string& path,
                 const std::string& token, const std::string& body,
                 const std::vector<std::string>& headers) {
  HttpReply reply;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return reply;
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return reply;
  }
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty()) request += "Content-Type: application/json\r\n";
  for (const std::string& h : headers) request += h + "\r\n";
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

std::string JsonString(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":\"";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  const size_t start = at + needle.size();
  return json.substr(start, json.find('"', start) - start);
}

// ---- Child.

bool Child::Start(const Options& o) {
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

std::optional<std::string> Child::ReadLine(milliseconds timeout) {
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

void Child::WriteLine(const std::string& line) {
  if (stdin_ < 0) return;
  const std::string text = line + "\n";
  (void)!::write(stdin_, text.data(), text.size());
}

int Child::Wait(milliseconds timeout) {
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

void Child::Kill(int sig) {
  if (pid_ <= 0) return;
  ::kill(-pid_, sig);
  ::kill(pid_, sig);
  ::waitpid(pid_, nullptr, 0);
  if (sig != SIGKILL) ::kill(-pid_, SIGKILL);  // stragglers of the group
  pid_ = -1;
  CloseFds();
}

int Child::Stop(int sig) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, sig);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  CloseFds();
  return status;
}

void Child::CloseFds() {
  if (stdin_ >= 0) ::close(stdin_);
  if (stdout_ >= 0) ::close(stdout_);
  stdin_ = stdout_ = -1;
}

int RunToEnd(const std::vector<std::string>& argv, const std::vector<std::string>& env,
             seconds limit) {
  Child c;
  Child::Options o;
  o.argv = argv;
  o.env = env;
  if (!c.Start(o)) return -1;
  return c.Wait(limit);
}

// ---- The stack.

std::optional<Account> EnsureAccount(const std::string& name, bool fallback, std::string* why) {
  auto found = [](const std::string& user, const std::string& how) -> std::optional<Account> {
    const passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr || pw->pw_uid == 0) return std::nullopt;
    return Account{pw->pw_uid, pw->pw_gid, user, how};
  };
  if (auto a = found(name, "existing")) return a;
  if (::access("/etc/passwd", W_OK) == 0) {
    const std::string cmd =
        "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin " + name +
        " 2>&1";
    const int rc = std::system(cmd.c_str());
    if (auto a = found(name, "created with useradd")) return a;
    *why = "useradd " + name + " failed (" + std::to_string(rc) + ")";
  } else {
    *why = "no user " + name + " and /etc/passwd is not writable";
  }
  if (fallback) {
    for (const char* other : {"daemon", "bin", "sys"}) {
      if (auto a = found(other, "fallback: /etc is not writable")) return a;
    }
    *why += "; no unprivileged account other than nobody exists";
  }
  return std::nullopt;
}

bool Stack::Prepare(std::string* why) {
  const auto account = EnsureAccount(c_.api_user, true, why);
  if (!account) return false;
  account_ = *account;
  std::printf("api user: %s uid=%u gid=%u (%s)\n", account_.name.c_str(), account_.uid,
              account_.gid, account_.how.c_str());
  if (std::system(("rm -rf " + c_.base).c_str()) != 0) {
    *why = "rm -rf " + c_.base;
    return false;
  }
  ::mkdir(c_.base.c_str(), 0755);
  ::mkdir(workspace_root().c_str(), 0755);
  ::mkdir(workspace().c_str(), 0777);
  ::chmod(workspace().c_str(), 0777);
  ::mkdir(policies_dir().c_str(), 0755);
  for (const auto& [name, text] : c_.policies) {
    WriteFile(policies_dir() + "/" + name + ".json", text);
  }
  WriteFile(c_.base + "/monkeyproof.conf", "api_user = " + account_.name + "\n" + c_.daemon_conf);
  WriteFile(c_.base + "/api.conf", c_.api_conf);
  // The API's StateDirectory, as the package's unit gives it one: its scoped-token store.
  const std::string state = c_.base + "/api-state";
  ::mkdir(state.c_str(), 0700);
  if (::chown(state.c_str(), account_.uid, account_.gid) != 0) {
    *why = "chown " + state + ": " + std::strerror(errno);
    return false;
  }
  token_ = RandomHex(24);
  const std::string token_file = c_.base + "/api-token";
  WriteFile(token_file, "# e2e token\n" + token_ + "\n");
  if (::chown(token_file.c_str(), 0, account_.gid) != 0 || ::chmod(token_file.c_str(), 0640)) {
    *why = "chown/chmod " + token_file + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

void Stack::StartDaemon() {
  Child::Options o;
  o.argv = {MP_MONKEYPROOFD_PATH,
            "--config",
            c_.base + "/monkeyproof.conf",
            "--state-dir",
            c_.base + "/state",
            "--socket",
            c_.base + "/run/control.sock",
            "--cgroup-root",
            c_.cgroup,
            "--policies",
            policies_dir(),
            "--audit-log",
            c_.base + "/audit.log"};
  o.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"};
  o.log = c_.base + "/daemon.log";
  daemon_ = std::make_unique<Child>();
  daemon_->Start(o);
}

void Stack::StartApi() {
  Child::Options o;
  o.argv = {"setpriv",
            "--reuid=" + std::to_string(account_.uid),
            "--regid=" + std::to_string(account_.gid),
            "--init-groups",
            "--",
            MP_API_PATH,
            "--config",
            c_.base + "/api.conf",
            "--listen",
            "127.0.0.1:" + std::to_string(c_.port),
            "--control-socket",
            c_.base + "/run/control.sock",
            "--token-file",
            c_.base + "/api-token"};
  o.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
           "STATE_DIRECTORY=" + c_.base + "/api-state"};
  o.log = c_.base + "/api.log";
  api_ = std::make_unique<Child>();
  api_->Start(o);
}

double Stack::WaitReady(seconds limit) {
  const auto start = Clock::now();
  while (SecondsSince(start) < static_cast<double>(limit.count())) {
    if (Http("GET", "/readyz").status == 200) return SecondsSince(start);
    if (api_ && ::waitpid(api_->pid(), nullptr, WNOHANG) == api_->pid()) return -1;
    ::usleep(100 * 1000);
  }
  return -1;
}

std::string Stack::Logs() const {
  return "\n--- monkeyproofd log:\n" + Tail(c_.base + "/daemon.log") +
         "\n--- monkeyproof-api log:\n" + Tail(c_.base + "/api.log");
}

std::vector<std::string> Stack::ScriptEnv(const std::vector<std::string>& extra) const {
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                                  "LANG=C.UTF-8",
                                  "HOME=/root",
                                  std::string("PYTHON=") + kPython,
                                  "PYTHONUNBUFFERED=1",
                                  "MP_API_URL=" + url(),
                                  "MP_API_TOKEN=" + token_,
                                  "MP_E2E_WORKSPACE=" + workspace_root()};
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

}  // namespace mp::testing
