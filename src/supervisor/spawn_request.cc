// Building a sandbox::SpawnRequest from an effective policy and a request: argv, environment
// (with credentials read from the credentials directory), binds, hidden paths, limits, ids.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "common/messages.h"
#include "common/unique_fd.h"
#include "sandbox/mounts.h"
#include "sandbox/session_netns.h"
#include "supervisor/host_setup.h"
#include "supervisor/policy.h"
#include "supervisor/policy_internal.h"

namespace mp::supervisor {

using namespace internal;  // NOLINT(google-build-using-namespace): this file's own helpers

namespace {

template <typename Value>
class NameCache {
 public:
  explicit NameCache(std::chrono::steady_clock::duration ttl) : ttl_(ttl) {}

  template <typename Lookup>
  std::optional<Value> Get(const std::string& name, const Lookup& lookup) {
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mu_);
      if (auto it = entries_.find(name); it != entries_.end() && now < it->second.expires) {
        return it->second.value;
      }
    }
    std::optional<Value> found = lookup(name);
    std::lock_guard lock(mu_);
    if (found && ttl_.count() > 0) {
      if (entries_.size() >= kMaxEntries) entries_.clear();
      entries_[name] = Entry{*found, now + ttl_};
    } else {
      entries_.erase(name);
    }
    return found;
  }

 private:
  static constexpr size_t kMaxEntries = 256;  // a few names per policy; bounds a surprise
  struct Entry {
    Value value;
    std::chrono::steady_clock::time_point expires;
  };
  const std::chrono::steady_clock::duration ttl_;
  std::mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_;
};

std::optional<UserIds> GetPwNam(const std::string& user) {
  struct passwd pw {};
  struct passwd* out = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &out) != 0 || out == nullptr) {
    return std::nullopt;
  }
  return UserIds{pw.pw_uid, pw.pw_gid};
}

std::optional<gid_t> GetGrNam(const std::string& group) {
  struct group gr {};
  struct group* out = nullptr;
  std::vector<char> buf(65536);
  if (::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &out) != 0 || out == nullptr) {
    return std::nullopt;
  }
  return gr.gr_gid;
}

}  // namespace

SpawnHost WithNameCache(SpawnHost host, std::chrono::steady_clock::duration ttl) {
  if (host.lookup_user) {
    auto cache = std::make_shared<NameCache<UserIds>>(ttl);
    host.lookup_user = [cache, lookup = std::move(host.lookup_user)](const std::string& user) {
      return cache->Get(user, lookup);
    };
  }
  if (host.lookup_group) {
    auto cache = std::make_shared<NameCache<gid_t>>(ttl);
    host.lookup_group = [cache, lookup = std::move(host.lookup_group)](const std::string& group) {
      return cache->Get(group, lookup);
    };
  }
  return host;
}

SpawnHost SystemSpawnHost() {
  SpawnHost host;
  host.lookup_user = GetPwNam;
  host.lookup_group = GetGrNam;
  host.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v != nullptr ? std::optional<std::string>(v) : std::nullopt;
  };
  host.is_executable = [](const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
  };
  return WithNameCache(std::move(host), kNameCacheTtl);
}

namespace {

// Shells that take `-c STRING` and source a file with `. PATH` (POSIX `.`: no PATH search for
// a path with a slash, same shell process, same $0 and positional parameters).
bool IsKnownShell(std::string_view command) {
  const size_t slash = command.rfind('/');
  const std::string_view name =
      slash == std::string_view::npos ? command : command.substr(slash + 1);
  for (const std::string_view shell :
       {"sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "ash", "yash", "posh"}) {
    if (name == shell) return true;
  }
  return false;
}

// `SHELL [ARGS...] -c|-lc`: the task is the shell's command string.
bool TakesShellString(const std::vector<std::string>& argv) {
  return argv.size() >= 2 && IsKnownShell(argv.front()) &&
         (argv.back() == "-c" || argv.back() == "-lc");
}

// The task becomes the command's last argument. One execve argument holds at most
// kMaxArgTaskBytes, so a longer task of a shell run as `SHELL [ARGS...] -c|-lc TASK` goes into
// the sandbox's private /tmp (sandbox::kTaskFilePath, root-owned, read-only) and the shell
// sources it: `SHELL [ARGS...] -lc '. /tmp/.monkeyproof-task'`. Differences from an
// argument: error messages and $LINENO name the file, bash's BASH_SOURCE is set, and a
// top-level `return` ends the task instead of failing. Any other command (an agent CLI, a
// non-shell interpreter) cannot take such a task: too_large, naming the limit.
Result<void> PlaceTask(const std::string& task, sandbox::SpawnRequest* r) {
  if (task.size() <= kMaxArgTaskBytes) {
    r->argv.push_back(task);
    return Ok();
  }
  if (!TakesShellString(r->argv)) {
    return CodedError(ErrorCode::kTooLarge,
                      "task of " + std::to_string(task.size()) + " bytes is longer than " +
                          Quote(r->argv.front()) + " can take: it gets the task as one " +
                          "argument, which Linux caps at " + std::to_string(kMaxArgTaskBytes) +
                          " bytes (MAX_ARG_STRLEN); only a shell run with -c or -lc takes " +
                          "longer tasks (up to " + std::to_string(wire::kMaxTaskBytes) +
                          " bytes); put long context in a file in the workspace instead")
        .At("/task");
  }
  r->argv.push_back(std::string(". ") + sandbox::kTaskFilePath);
  r->task_file = task;
  return Ok();
}

// The regular file `resolv_conf` resolves to when that lies outside the allowlisted view's
// directories (sandbox::kViewRootNames), else nothing.
std::optional<std::string> ResolvConfOutsideView(const std::string& resolv_conf) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(resolv_conf.c_str(), nullptr),
                                                   &std::free);
  if (!real) return std::nullopt;
  const std::string path = real.get();
  for (const std::string_view name : sandbox::kViewRootNames) {
    if (sandbox::PathIsWithin(path, "/" + std::string(name))) return std::nullopt;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return path;
}

// Opens host.credentials_dir and checks that it belongs to host.credentials_owner and is
// writable by nobody else; an invalid fd when it does not exist.
Result<UniqueFd> OpenCredentialsDir(const SpawnHost& host) {
  const std::string dir_label = "credentials directory " + Quote(host.credentials_dir);
  UniqueFd dir(::open(host.credentials_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOENT) return UniqueFd();
    return ErrnoError("open(" + dir_label + ")");
  }
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0) return ErrnoError("fstat(" + dir_label + ")");
  if (st.st_uid != host.credentials_owner || (st.st_mode & 022) != 0) {
    return CodedError(ErrorCode::kHostSetup, dir_label + " must belong to uid " +
                                                 std::to_string(host.credentials_owner) +
                                                 " and not be writable by group or others");
  }
  return dir;
}

std::string MissingCredentialsDir(const SpawnHost& host, const std::string& where,
                                  const std::string& credential) {
  return "the credentials directory " + Quote(host.credentials_dir) + " does not exist, and " +
         where + " reads the secret " + Quote(credential) +
         " from it; create the directory (owned by root, mode 0700) with that file "
         "(docs/policies.md, \"Installing the agents and their credentials\")";
}

// Credential file `name` in `dir`: private to its owner, host.credentials_owner; its one
// trailing newline (echo, an editor) dropped. A missing, unreadable or loosely owned file is
// the host's to fix (kHostSetup; ENOENT kept for the caller). The value appears in no error.
Result<std::string> ReadCredential(int dir, const std::string& name, const SpawnHost& host) {
  auto value = ReadSmallFile(dir, name, "credential " + Quote(name), kMaxSecretBytes,
                             {host.credentials_owner, true, true});
  if (!value) {
    Error e = std::move(value).error();
    e.code = ErrorCode::kHostSetup;
    return e;
  }
  if (value->ends_with('\n')) value->pop_back();
  if (value->find('\0') != std::string::npos) {
    return PlainError("credential " + Quote(name) + " contains a NUL byte");
  }
  return value;
}

}  // namespace

std::string GatewayBaseUrl(size_t index) {
  return std::string("http://") + sandbox::kEgressProxyAddress + ":" +
         std::to_string(sandbox::kEgressEndpointPortBase + index);
}

Result<std::vector<egress::HandoverEndpoint>> ReadGatewayEndpoints(
    const std::vector<GatewayEndpoint>& gateway, const SpawnHost& host, const std::string& where) {
  std::vector<egress::HandoverEndpoint> out;
  if (gateway.empty()) return out;
  auto opened = OpenCredentialsDir(host);
  if (!opened) return std::move(opened).error().Wrap(where);
  UniqueFd dir = std::move(*opened);
  if (!dir) {
    return CodedError(ErrorCode::kHostSetup,
                      MissingCredentialsDir(host, where, gateway.front().secret));
  }
  for (size_t i = 0; i < gateway.size(); ++i) {
    const GatewayEndpoint& g = gateway[i];
    const std::string field = where + ", network.gateway[" + std::to_string(i) + "]";
    auto value = ReadCredential(dir.get(), g.secret, host);
    if (!value) return std::move(value).error().Wrap(field);
    // The key goes into a header value (a line break would split the request upstream) and
    // into the handover's JSON (which takes UTF-8 only): visible ASCII, as API keys are.
    const bool visible =
        std::all_of(value->begin(), value->end(), [](char c) { return c > 0x20 && c < 0x7f; });
    if (value->empty() || !visible) {
      return CodedError(ErrorCode::kHostSetup,
                        "credential " + Quote(g.secret) +
                            " is empty or has a byte that is not visible ASCII (a space, a "
                            "line break, a control or non-ASCII byte); write the key alone on "
                            "one line")
          .Wrap(field);
    }
    if (g.prefix.size() + value->size() > egress::kMaxEndpointValueBytes) {
      return CodedError(ErrorCode::kHostSetup, "credential " + Quote(g.secret) +
                                                   " is longer than a gateway endpoint's " +
                                                   std::to_string(egress::kMaxEndpointValueBytes) +
                                                   " bytes (with its prefix)")
          .Wrap(field);
    }
    out.push_back({g.upstream, g.header, g.prefix + *value});
  }
  return out;
}

Result<sandbox::SpawnRequest> BuildSpawnRequest(const EffectivePolicy& effective,
                                                const SessionLaunch& launch,
                                                const SpawnHost& host) {
  const Policy& p = effective.policy;
  const std::string where = "policy " + Quote(p.name);
  sandbox::SpawnRequest r;

  const auto bad = [](ErrorCode code, std::string field, std::string what) {
    return CodedError(code, std::move(what)).At(std::move(field));
  };
  if (launch.task.empty()) return bad(ErrorCode::kBadRequest, "/task", "task is empty");
  if (launch.task.find('\0') != std::string::npos) {
    return bad(ErrorCode::kBadRequest, "/task", "task contains a NUL byte");
  }
  if (launch.task.size() > wire::kMaxTaskBytes) {
    return bad(ErrorCode::kTooLarge, "/task",
               "task of " + std::to_string(launch.task.size()) +
                   " bytes is longer than a task may be (" + std::to_string(wire::kMaxTaskBytes) +
                   " bytes)");
  }
  if (launch.command || launch.args) {
    if (!p.command.empty()) {
      return bad(ErrorCode::kPolicyViolation, launch.command ? "/command" : "/args",
                 where + " fixes the command; a request under it may not give command or args");
    }
    if (launch.command && launch.command->empty()) {
      return bad(ErrorCode::kBadRequest, "/command", "command is empty");
    }
    const bool exec = p.type == SessionType::kExec;
    if (!launch.command && !exec) {
      return bad(ErrorCode::kBadRequest, "/command",
                 std::string(ToString(p.type)) + " sessions with args need a command too");
    }
    // The original server's rules: a command without args is a shell given the task as its
    // script; args without a command are /bin/sh's.
    r.argv = {launch.command.value_or("/bin/sh")};
    if (launch.args) {
      r.argv.insert(r.argv.end(), launch.args->begin(), launch.args->end());
    } else if (exec) {
      r.argv.emplace_back("-lc");
    }
    for (size_t i = 0; i < r.argv.size(); ++i) {
      if (r.argv[i].find('\0') != std::string::npos) {
        return bad(ErrorCode::kBadRequest, i == 0 ? "/command" : "/args",
                   "command and args may not contain NUL bytes");
      }
    }
  } else if (!p.command.empty()) {
    r.argv = p.command;
    // The policy fixed this command line; a task it gets as an argument must not add options
    // to it (`--settings=...`, `-c model_provider=...`): most CLIs take options anywhere.
    if (!TakesShellString(r.argv) && !launch.task.empty() && launch.task.front() == '-') {
      return bad(ErrorCode::kPolicyViolation, "/task",
                 "a task that begins with \"-\" would be read by " + Quote(r.argv.front()) +
                     " as an option, changing the command line " + where +
                     " fixes; begin it with another character (a space, say)");
    }
  } else if (p.type == SessionType::kExec) {
    r.argv = {"/bin/sh", "-lc"};
  } else {
    return bad(ErrorCode::kBadRequest, "/command",
               std::string(ToString(p.type)) + " sessions under " + where +
                   " need their own command (and args), or a preset");
  }
  MP_RETURN_IF_ERROR(PlaceTask(launch.task, &r));

  for (const auto& [name, value] : launch.env) {
    const std::string field = "/env/" + name;
    if (std::find(p.request_env_allow.begin(), p.request_env_allow.end(), name) ==
        p.request_env_allow.end()) {
      return bad(ErrorCode::kPolicyViolation, field,
                 "env " + Quote(name) + " is not in request_env.allow of " + where +
                     (p.request_env_allow.empty() ? " (which allows none)"
                                                  : " (" + JoinQuoted(p.request_env_allow) + ")"));
    }
    if (value.find('\0') != std::string::npos || value.size() > kMaxEnvValueBytes) {
      return bad(ErrorCode::kBadRequest, field,
                 "env " + Quote(name) + " contains a NUL byte or is longer than " +
                     std::to_string(kMaxEnvValueBytes) + " bytes");
    }
  }
  // What the host lacks for this policy (its user, state dirs, a preset's command) is the
  // operator's to fix, whatever the request: said first, all of it at once.
  MP_RETURN_IF_ERROR(CheckHostSetup(p, host));
  MP_TRY(r.workspace, ResolveWorkspace(p, launch.cwd, launch.cwd_within));

  std::map<std::string, std::string> env;
  for (const auto& name : p.env.pass) {
    if (auto v = host.getenv ? host.getenv(name) : std::nullopt) env[name] = *v;
  }
  for (const auto& [name, value] : p.env.set) env[name] = value;
  if (!p.env.secrets.empty() || !p.env.optional_secrets.empty()) {
    auto dir = OpenCredentialsDir(host);
    if (!dir) return std::move(dir).error().Wrap(where);
    // Without the directory every optional secret is absent (the agent uses the login kept in
    // its state dir); a required one is the host's setup to fix.
    if (!*dir && !p.env.secrets.empty()) {
      return CodedError(ErrorCode::kHostSetup,
                        MissingCredentialsDir(host, where, p.env.secrets.begin()->second));
    }
    for (const bool optional : {false, true}) {
      if (!*dir) break;
      const auto& secrets = optional ? p.env.optional_secrets : p.env.secrets;
      const std::string field = optional ? ", env.optional_secrets." : ", env.secrets.";
      for (const auto& [name, credential] : secrets) {
        auto value = ReadCredential(dir->get(), credential, host);
        // Only absence is optional: a file that exists must pass every check.
        if (!value && optional && value.error().errnum == ENOENT) continue;
        if (!value) return std::move(value).error().Wrap(where + field + name);
        // An empty file holds no key: an optional one is as if absent (the agent falls back to
        // the login in its state dir, which an empty variable could mask); a required one is
        // a mistake to report.
        if (value->empty()) {
          if (optional) continue;
          return PlainError("credential " + Quote(credential) + " is empty")
              .Wrap(where + field + name);
        }
        env[name] = std::move(*value);
      }
    }
  }
  // The credential gateway's endpoints on the session's loopback, and placeholder keys: the
  // real ones stay with monkeyproof-egress (EgressLink hands them over).
  for (size_t i = 0; i < p.gateway.size(); ++i) {
    env[p.gateway[i].base_url_env] = GatewayBaseUrl(i);
    if (!p.gateway[i].key_env.empty()) env[p.gateway[i].key_env] = kGatewayPlaceholderKey;
  }
  for (const auto& [name, value] : launch.env) env[name] = value;
  for (const auto& [name, value] : env) r.env.push_back(name + "=" + value);
  if (auto path = env.find("PATH"); path != env.end()) r.search_path = path->second;

  if (!host.lookup_user) return PlainError("no user lookup").Wrap(where);
  const std::optional<UserIds> ids = host.lookup_user(p.run_as.user);
  if (!ids) {  // CheckHostSetup found it; gone since
    return CodedError(ErrorCode::kHostSetup,
                      "run_as.user " + Quote(p.run_as.user) + ": no such user")
        .Wrap(where);
  }
  r.uid = ids->uid;
  r.gid = ids->gid;
  if (!p.run_as.group.empty()) {
    const std::optional<gid_t> gid =
        host.lookup_group ? host.lookup_group(p.run_as.group) : std::nullopt;
    if (!gid) {
      return CodedError(ErrorCode::kHostSetup,
                        "run_as.group " + Quote(p.run_as.group) + ": no such group")
          .Wrap(where);
    }
    r.gid = *gid;
  }
  r.allow_root = p.run_as.allow_root;
  if ((r.uid == 0 || r.gid == 0) && !r.allow_root) {
    return PlainError("run_as " + Quote(p.run_as.user) + " resolves to uid " +
                      std::to_string(r.uid) + " gid " + std::to_string(r.gid) +
                      "; id 0 is refused unless run_as.allow_root is true")
        .Wrap(where);
  }

  for (const auto& m : p.mounts) r.binds.push_back({m.source, m.target, m.mode});
  // State dirs are read-only: what one session wrote there, the next would read (its login,
  // settings, hooks). The home's dir is the seed of the session's private home (an overlay:
  // writes land in a layer of the session's own), or, kept "shared", the old read-write bind.
  for (const auto& s : p.state_dirs) {
    if (s == p.home.dir && p.home.keep == HomeKeep::kSession) {
      r.home = sandbox::HomeSpec{s, s, p.home.max_bytes};
      continue;
    }
    const bool shared = s == p.home.dir && p.home.keep == HomeKeep::kShared;
    r.binds.push_back(
        {s, s, shared ? sandbox::BindMode::kReadWrite : sandbox::BindMode::kReadOnly});
  }
  r.binds.push_back({r.workspace, r.workspace, sandbox::BindMode::kReadWrite});
  r.hide = p.HiddenPaths();
  // The other sessions' workspaces: each root is covered by an empty directory,
  // and only this session's workspace is bound back in (the sandbox places
  // binds after hides).
  for (const auto& root : p.workspace_roots) {
    if (::access(root.c_str(), F_OK) == 0) r.hide.push_back(root);
  }
  r.network = p.network;
  // The allowlisted view has no /run: where the host's resolv.conf is a symlink out of the
  // view (systemd-resolved's /run/systemd/resolve/stub-resolv.conf), a session on the host's
  // network gets that one file, read-only, at its own path.
  if (p.network == sandbox::NetworkMode::kHost) {
    auto target = ResolvConfOutsideView(host.resolv_conf);
    if (target && r.binds.size() < sandbox::kMaxBinds) r.binds.push_back({*target, *target});
  }
  r.oom_score_adj = host.session_oom_score_adj;

  r.limits.memory_max_bytes = p.limits.memory_max_bytes;
  r.limits.memory_swap_max_bytes = p.limits.memory_swap_max_bytes;
  r.limits.pids_max = p.limits.pids_max;
  r.pty_max = static_cast<uint32_t>(p.limits.pty_max);
  if (p.limits.cpu_max_percent) {
    r.limits.cpu_max = std::to_string(*p.limits.cpu_max_percent * kCpuPeriodMicros / 100) + " " +
                       std::to_string(kCpuPeriodMicros);
  }
  for (const RlimitField& f : kRlimitFields) {
    if (const auto& v = p.rlimits.*f.member) r.rlimits.push_back({f.resource, *v, *v});
  }
  if (!p.seccomp_program) return PlainError("no compiled seccomp program").Wrap(where);
  r.seccomp = p.seccomp_program->fprog();
  r.stdio =
      p.type == SessionType::kInteractive ? sandbox::StdioMode::kPty : sandbox::StdioMode::kPipes;
  return r;
}

Result<void> UseSessionIds(const Policy& p, const SpawnHost& host, uint32_t id,
                           sandbox::SpawnRequest* r) {
  const std::string where = "policy " + Quote(p.name);
  if (r->uid == 0) return Ok();  // run_as root (allow_root): root stays root
  sandbox::IdmapOwner owner{r->uid, r->gid};
  if (!p.workspace_owner.user.empty()) {
    const std::optional<UserIds> ids =
        host.lookup_user ? host.lookup_user(p.workspace_owner.user) : std::nullopt;
    if (!ids) {
      return CodedError(ErrorCode::kHostSetup,
                        "workspace_owner.user " + Quote(p.workspace_owner.user) + ": no such user")
          .Wrap(where);
    }
    owner = {ids->uid, ids->gid};
  }
  if (!p.workspace_owner.group.empty()) {
    const std::optional<gid_t> gid =
        host.lookup_group ? host.lookup_group(p.workspace_owner.group) : std::nullopt;
    if (!gid) {
      return CodedError(
                 ErrorCode::kHostSetup,
                 "workspace_owner.group " + Quote(p.workspace_owner.group) + ": no such group")
          .Wrap(where);
    }
    owner.gid = *gid;
  }
  if ((owner.uid == 0 || owner.gid == 0) && !p.run_as.allow_root) {
    return PlainError("workspace_owner resolves to uid " + std::to_string(owner.uid) + " gid " +
                      std::to_string(owner.gid) +
                      "; id 0 is refused unless run_as.allow_root is true")
        .Wrap(where);
  }
  if (owner.uid == id || owner.gid == id) {
    return CodedError(ErrorCode::kHostSetup, "the workspace owner's id " + std::to_string(id) +
                                                 " lies in session_uid_range; give the owner an "
                                                 "id outside it")
        .Wrap(where);
  }
  r->idmap_owner = owner;
  r->uid = id;
  r->gid = id;
  for (auto& b : r->binds) {
    const bool state_dir =
        std::find(p.state_dirs.begin(), p.state_dirs.end(), b.source) != p.state_dirs.end();
    if (b.source == r->workspace || state_dir) b.idmap = true;
  }
  // The private home's seed is a state dir too: its lower layer is seen through the same idmap,
  // or the session's uid could not read the owner's 0600 files (an agent's credentials).
  if (r->home) r->home->idmap = true;
  return Ok();
}

}  // namespace mp::supervisor
