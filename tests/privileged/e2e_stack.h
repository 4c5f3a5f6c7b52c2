// The end-to-end stack shared by the privileged API tests (api_e2e_test, agent_e2e_test): the
// real supervisor (monkeyproofd, root) and the real API (monkeyproof-api, as its own
// unprivileged user) started as child processes in the test VM, a blocking HTTP client for
// readiness checks, and the child-process helper the tests drive their scripts with.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mp::testing {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start);
void WriteFile(const std::string& path, const std::string& text);
std::string ReadFile(const std::string& path);
// The last `n` bytes of a log, for failure messages.
std::string Tail(const std::string& path, size_t n = 3000);
// The text around the first `needle` in `text` (empty when absent).
std::string Around(const std::string& text, const std::string& needle);
std::string RandomHex(size_t bytes);
// "exit status 3", "killed by signal 9", "timed out (killed)" for a wait status (-1: timeout).
std::string DescribeStatus(int status);
// Each entry on its own indented line.
std::string Join(const std::vector<std::string>& v);

// ---- A tiny blocking HTTP/1.1 client (Connection: close) to 127.0.0.1:`port`, enough for
// readiness checks and simple requests. The scripts do the thorough HTTP work.

struct HttpReply {
  int status = 0;                              // 0: no answer (connect failed, closed early)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// `headers`: extra header lines, each "Name: value" without the CRLF.
HttpReply HttpTo(uint16_t port, const std::string& method, const std::string& path,
                 const std::string& token, const std::string& body = "",
                 const std::vector<std::string>& headers = {});

// A JSON string member's value, for the few fields the C++ side reads ("id", "code").
std::string JsonString(const std::string& json, const std::string& key);

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
  ~Child() { Kill(9); }

  bool Start(const Options& o);
  // The next line of the child's stdout (pipe_stdio), without the newline; nullopt on EOF or
  // timeout. Each line read is echoed to the test's stdout.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout);
  void WriteLine(const std::string& line);
  // Waits for the exit (echoing piped output); returns the wait status, or -1 after `timeout`
  // (the group is then killed).
  int Wait(std::chrono::milliseconds timeout);
  // Signals the whole group, reaps the child, then SIGKILLs what is left of the group.
  void Kill(int sig);
  // Signals the child alone and waits; returns the wait status.
  int Stop(int sig);

  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  void CloseFds();

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  std::string pending_;
};

// Runs `argv` with `env` to completion (its output goes to the test's stdout); returns the
// wait status, or -1 after `limit`.
int RunToEnd(const std::vector<std::string>& argv, const std::vector<std::string>& env,
             std::chrono::seconds limit);

// ---- The stack: monkeyproofd as root, monkeyproof-api as an unprivileged user.

struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
  std::string how;  // created / existing, for the log
};

// A system user `name`. The guest's /etc lives in the VM's tmpfs overlay, so useradd changes
// nothing on the host. With `fallback`, where /etc is read-only, an existing unprivileged
// account that is not `nobody` stands in.
std::optional<Account> EnsureAccount(const std::string& name, bool fallback, std::string* why);

struct StackConfig {
  std::string base;      // everything of the run lives below it (removed first)
  uint16_t port = 0;     // the API listens on 127.0.0.1:port
  std::string cgroup;    // monkeyproofd's --cgroup-root
  std::string api_user;  // created when absent
  std::map<std::string, std::string> policies;  // file stem -> JSON text
  std::string daemon_conf;                      // monkeyproof.conf, after `api_user = …`
  std::string api_conf;                         // the API's own config file
};

class Stack {
 public:
  explicit Stack(StackConfig config) : c_(std::move(config)) {}

  // Creates the account, removes and recreates `base` with ws/ (mode 0777), policies/ and the
  // API's state directory api-state/ (its STATE_DIRECTORY: scoped tokens are enabled), and
  // writes the configs, the policies and a fresh token.
  bool Prepare(std::string* why);
  void StartDaemon();
  void StartApi();
  // Polls GET /readyz until 200; returns the seconds it took, or -1.
  double WaitReady(std::chrono::seconds limit);
  int StopApi(int sig) { return api_ ? api_->Stop(sig) : -1; }
  int StopDaemon(int sig) { return daemon_ ? daemon_->Stop(sig) : -1; }

  HttpReply Http(const std::string& method, const std::string& path,
                 const std::string& body = "") const {
    return HttpTo(c_.port, method, path, token_, body);
  }

  // The tails of both processes' logs, for failure messages.
  [[nodiscard]] std::string Logs() const;
  [[nodiscard]] const std::string& token() const { return token_; }
  [[nodiscard]] const Account& account() const { return account_; }
  [[nodiscard]] const StackConfig& config() const { return c_; }
  [[nodiscard]] pid_t api_pid() const { return api_ ? api_->pid() : -1; }
  [[nodiscard]] pid_t daemon_pid() const { return daemon_ ? daemon_->pid() : -1; }
  // The policies' workspace root, and the sessions' workspace below it (a root itself is
  // refused as a cwd).
  [[nodiscard]] std::string workspace_root() const { return c_.base + "/ws"; }
  [[nodiscard]] std::string workspace() const { return workspace_root() + "/w"; }
  [[nodiscard]] std::string policies_dir() const { return c_.base + "/policies"; }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(c_.port); }

  // The environment the scripts get: MP_API_URL, MP_API_TOKEN, MP_E2E_WORKSPACE, PYTHON
  // (Debian's interpreter), plus `extra`.
  [[nodiscard]] std::vector<std::string> ScriptEnv(
      const std::vector<std::string>& extra = {}) const;

 private:
  StackConfig c_;
  Account account_;
  std::string token_;
  std::unique_ptr<Child> daemon_;
  std::unique_ptr<Child> api_;
};

}  // namespace mp::testing
