#include "supervisor/exec_command.h"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/seccomp.h"
#include "sandbox/spawn.h"

namespace mp::supervisor {
namespace {

using sandbox::BindMode;
using sandbox::SpawnRequest;

constexpr char kDefaultCgroupRoot[] = "/sys/fs/cgroup/monkeyproof";

void PrintExecUsage(FILE* out) {
  std::fprintf(out,
               R"(usage: monkeyproofd exec [options] -- CMD [ARGS...]

Runs CMD once in a full sandbox (own cgroup v2 leaf; pid, mount, ipc, uts,
cgroup and network namespaces; read-only root; private /tmp; no capabilities;
no_new_privs; the default seccomp deny list) and exits with its status
(128+N when killed by signal N). Needs root and a cgroup v2 root with the
memory, pids and cpu controllers.

options:
  --cgroup-root PATH   delegated cgroup under which the leaf is made
                       (default $MONKEYPROOF_CGROUP_ROOT or %s;
                       created, with controllers enabled, if missing)
  --workspace DIR      bind DIR read-write and start there (default: none, cwd /)
  --rw PATH            bind PATH read-write (repeatable)
  --ro PATH            bind PATH read-only over a writable tree (repeatable)
  --hide PATH          cover PATH with an empty file or directory (repeatable)
  --user USER|UID[:GID]  run as this user (default nobody)
  --allow-root         permit --user 0 (capabilities are still all dropped)
  --net none|host      network namespace: loopback only (default) or the host's
  --memory-max SIZE    memory.max (bytes; K, M, G suffixes); swap is off when set
  --pids-max N         pids.max
  --cpu-max "Q P"      cpu.max quota and period in microseconds
  --timeout SECONDS    wall-clock deadline; the whole tree is killed at it
  --tmp-size SIZE      size of the private /tmp (default 256M)
  --env NAME=VALUE     set a variable (repeatable); nothing else is passed
  --pass-env NAME      pass NAME from this environment (repeatable)
  --no-seccomp         run without the seccomp filter (for diagnosis only)
  -h, --help           this text
)",
               kDefaultCgroupRoot);
}

std::optional<uint64_t> ParseSize(std::string_view s) {
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'K':
      case 'k':
        mult = 1ull << 10;
        break;
      case 'M':
      case 'm':
        mult = 1ull << 20;
        break;
      case 'G':
      case 'g':
        mult = 1ull << 30;
        break;
      default:
        break;
    }
    if (mult != 1) s.remove_suffix(1);
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  if (v > UINT64_MAX / mult) return std::nullopt;
  return v * mult;
}

bool ResolveUser(const std::string& spec, uid_t* uid, gid_t* gid, std::string* err) {
  const size_t colon = spec.find(':');
  const std::string user = spec.substr(0, colon);
  uint64_t num = 0;
  auto [p, ec] = std::from_chars(user.data(), user.data() + user.size(), num);
  if (!user.empty() && ec == std::errc() && p == user.data() + user.size()) {
    *uid = static_cast<uid_t>(num);
    const struct passwd* pw = ::getpwuid(*uid);
    *gid = pw != nullptr ? pw->pw_gid : static_cast<gid_t>(num);
  } else {
    const struct passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr) {
      *err = "unknown user \"" + user + "\"";
      return false;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
  }
  if (colon != std::string::npos) {
    const std::string g = spec.substr(colon + 1);
    auto [q, ec2] = std::from_chars(g.data(), g.data() + g.size(), num);
    if (!g.empty() && ec2 == std::errc() && q == g.data() + g.size()) {
      *gid = static_cast<gid_t>(num);
    } else if (const struct group* gr = ::getgrnam(g.c_str())) {
      *gid = gr->gr_gid;
    } else {
      *err = "unknown group \"" + g + "\"";
      return false;
    }
  }
  return true;
}

}  // namespace

int RunExecCommand(int argc, char** argv) {
  SpawnRequest req;
  req.stdio = sandbox::StdioMode::kInherit;
  std::string cgroup_root = std::getenv("MONKEYPROOF_CGROUP_ROOT") != nullptr
                                ? std::getenv("MONKEYPROOF_CGROUP_ROOT")
                                : kDefaultCgroupRoot;
  std::optional<double> timeout_s;
  bool seccomp_on = true;
  std::vector<std::string> command;
  std::string error;

  auto need = [&](int& i, const char* flag) -> const char* {
    if (i + 1 >= argc) {
      error = std::string(flag) + " needs a value";
      return nullptr;
    }
    return argv[++i];
  };
  int i = 0;
  for (; i < argc && error.empty(); ++i) {
    const std::string a = argv[i];
    const char* v = nullptr;
    if (a == "--") {
      ++i;
      break;
    } else if (a == "-h" || a == "--help") {
      PrintExecUsage(stdout);
      return 0;
    } else if (a == "--cgroup-root") {
      if ((v = need(i, "--cgroup-root"))) cgroup_root = v;
    } else if (a == "--workspace") {
      if ((v = need(i, "--workspace"))) {
        req.workspace = v;
        req.binds.push_back({v, v, BindMode::kReadWrite});
      }
    } else if (a == "--rw" || a == "--ro") {
      if ((v = need(i, a.c_str()))) {
        req.binds.push_back({v, v, a == "--rw" ? BindMode::kReadWrite : BindMode::kReadOnly});
      }
    } else if (a == "--hide") {
      if ((v = need(i, "--hide"))) req.hide.emplace_back(v);
    } else if (a == "--user") {
      if ((v = need(i, "--user"))) ResolveUser(v, &req.uid, &req.gid, &error);
    } else if (a == "--allow-root") {
      req.allow_root = true;
    } else if (a == "--net") {
      if ((v = need(i, "--net"))) {
        if (std::string_view(v) == "none")
          req.network = sandbox::NetworkMode::kNone;
        else if (std::string_view(v) == "host")
          req.network = sandbox::NetworkMode::kHost;
        else
          error = "--net must be none or host, not \"" + std::string(v) + "\"";
      }
    } else if (a == "--memory-max" || a == "--tmp-size") {
      if ((v = need(i, a.c_str()))) {
        auto size = ParseSize(v);
        if (!size)
          error = a + ": \"" + v + "\" is not a size";
        else if (a == "--tmp-size")
          req.tmp_size_bytes = *size;
        else {
          req.limits.memory_max_bytes = *size;
          req.limits.memory_swap_max_bytes = 0;
        }
      }
    } else if (a == "--pids-max") {
      if ((v = need(i, "--pids-max"))) {
        auto n = ParseSize(v);
        if (!n)
          error = "--pids-max: \"" + std::string(v) + "\" is not a number";
        else
          req.limits.pids_max = *n;
      }
    } else if (a == "--cpu-max") {
      if ((v = need(i, "--cpu-max"))) req.limits.cpu_max = v;
    } else if (a == "--timeout") {
      if ((v = need(i, "--timeout"))) {
        char* end = nullptr;
        const double t = std::strtod(v, &end);
        if (end == v || *end != '\0' || !(t > 0))
          error = "--timeout: \"" + std::string(v) + "\" is not a positive number";
        else
          timeout_s = t;
      }
    } else if (a == "--env") {
      if ((v = need(i, "--env"))) req.env.emplace_back(v);
    } else if (a == "--pass-env") {
      if ((v = need(i, "--pass-env"))) {
        if (const char* val = std::getenv(v)) req.env.push_back(std::string(v) + "=" + val);
      }
    } else if (a == "--no-seccomp") {
      seccomp_on = false;
    } else {
      error = "unknown option \"" + a + "\" (the command follows --)";
    }
  }
  for (; i < argc; ++i) command.emplace_back(argv[i]);
  if (error.empty() && command.empty()) error = "no command given after --";
  if (!error.empty()) {
    std::fprintf(stderr, "monkeyproofd exec: %s\n", error.c_str());
    PrintExecUsage(stderr);
    return 2;
  }
  req.argv = command;
  bool has_path = false;
  for (const auto& e : req.env) has_path = has_path || e.rfind("PATH=", 0) == 0;
  if (!has_path) req.env.push_back("PATH=" + req.search_path);

  std::optional<sandbox::SeccompProgram> program;
  if (seccomp_on) {
    auto compiled = sandbox::CompileSeccomp(sandbox::DefaultDenyProfile());
    if (!compiled) {
      std::fprintf(stderr, "monkeyproofd exec: seccomp: %s\n", compiled.error().ToString().c_str());
      return 125;
    }
    program.emplace(std::move(*compiled));
    req.seccomp = program->fprog();
  }

  auto root = sandbox::PrepareCgroupRoot(cgroup_root);
  if (!root) {
    std::fprintf(stderr, "monkeyproofd exec: %s\n", root.error().ToString().c_str());
    return 125;
  }

  const std::string leaf_name = "exec-" + std::to_string(::getpid());
  const auto started = std::chrono::steady_clock::now();
  auto spawned = sandbox::Spawn(*root, leaf_name, req);
  if (!spawned) {
    std::fprintf(stderr, "monkeyproofd exec: %s: %s\n", command[0].c_str(),
                 spawned.error().ToString().c_str());
    return 127;
  }
  sandbox::SpawnedChild& child = *spawned;

  const char* reason = "exit";
  bool killed_by_us = false;
  for (;;) {
    struct pollfd pfd = {child.init.fd(), POLLIN, 0};
    int wait_ms = -1;
    if (timeout_s) {
      const double left =
          *timeout_s -
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      wait_ms = left <= 0 ? 0 : static_cast<int>(left * 1000) + 1;
    }
    const int rc = ::poll(&pfd, 1, wait_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc > 0) break;
    if (rc == 0 && !killed_by_us) {
      reason = "timeout_wall";
      killed_by_us = true;
      (void)child.leaf.Kill();
    }
  }
  auto report = sandbox::ReadExitReport(child.report.get());
  auto init_status = child.init.Wait();
  auto stats = sandbox::FinishLeaf(child.leaf, std::chrono::seconds(10));

  const sandbox::WaitStatus status =
      sandbox::CommandEnd(report, init_status).value_or(sandbox::WaitStatus{});
  if (!killed_by_us && stats && stats->oom_kill_events > 0)
    reason = "oom";
  else if (!killed_by_us && !status.exited && stats && stats->pids_max_events > 0)
    reason = "pids_limit";

  if (!stats) {
    std::fprintf(stderr, "monkeyproofd exec: cleanup: %s\n", stats.error().ToString().c_str());
  }
  if (std::strcmp(reason, "exit") != 0 || !status.exited) {
    std::string figures;
    if (stats && stats->memory_peak_bytes) {
      figures += " memory_peak=" + std::to_string(*stats->memory_peak_bytes);
    }
    if (stats) figures += " oom_kill=" + std::to_string(stats->oom_kill_events);
    if (std::strcmp(reason, "exit") == 0) reason = "signal";
    std::fprintf(stderr, "monkeyproofd exec: %s ended: reason=%s%s%s\n", command[0].c_str(), reason,
                 status.exited ? "" : (" signal=" + std::to_string(status.signal)).c_str(),
                 figures.c_str());
  }
  if (status.exited) return status.code;
  return 128 + status.signal;
}

}  // namespace mp::supervisor
