// The policy loader: one policy file's JSON document validated field by field into a Policy
// (ParsePolicy). Every problem is collected; the file and directory reading around it is in
// policy_set.cc, the field reference in docs/policies.md.
#include <algorithm>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "common/limits.h"
#include "common/names.h"
#include "sandbox/mounts.h"
#include "sandbox/syscall_groups.h"
#include "supervisor/policy.h"
#include "supervisor/policy_internal.h"
#include "supervisor/policy_json.h"

namespace mp::supervisor {

using nlohmann::json;

namespace {

using namespace internal;  // NOLINT(google-build-using-namespace): this file's own helpers

// Targets a bind may not use: the sandbox mounts its own /proc, /dev and /tmp after the binds,
// which would cover them. Sources there would expose host processes or devices.
constexpr std::string_view kReservedPaths[] = {"/proc", "/dev", "/tmp"};

bool InSet(char c, std::string_view set) {
  for (size_t i = 0; i < set.size(); ++i) {
    if (i + 2 < set.size() && set[i + 1] == '-') {
      if (c >= set[i] && c <= set[i + 2]) return true;
      i += 2;
    } else if (c == set[i]) {
      return true;
    }
  }
  return false;
}

// ^[first][rest]{0,max_len-1}$ with sets written like "a-z0-9_".
bool Matches(std::string_view s, std::string_view first, std::string_view rest, size_t max_len) {
  if (s.empty() || s.size() > max_len || !InSet(s[0], first)) return false;
  return std::all_of(s.begin() + 1, s.end(), [&](char c) { return InSet(c, rest); });
}
bool IsCredentialName(std::string_view s) { return Matches(s, "A-Za-z0-9_", "A-Za-z0-9._-", 128); }
bool IsAccountName(std::string_view s) { return Matches(s, "a-z_", "a-z0-9_.-", 32); }

bool IsReserved(std::string_view path) {
  return std::any_of(std::begin(kReservedPaths), std::end(kReservedPaths),
                     [&](std::string_view r) { return sandbox::PathIsWithin(path, r); });
}

// Validation of one parsed document into `p`.
class PolicyReader {
 public:
  PolicyReader(Checker& c, Policy& p) : c_(c), p_(p) {}

  void Read(const json& root) {
    if (!c_.Object(
            root, "",
            {"description", "type", "command", "bypasses_agent_permissions", "run_as",
             "workspace_roots", "default_workspace", "mounts", "state_dirs", "hide", "network",
             "seccomp", "rlimits", "limits", "deadlines", "output", "env", "request_env"})) {
      return;
    }
    if (auto d = c_.String(root, "", "description", true)) {
      if (d->empty() || d->size() > 1024) c_.Fail("/description", "must be 1 to 1024 bytes long");
      p_.description = *d;
    }
    ReadTypeAndCommand(root);
    ReadRunAs(root);
    ReadPaths(root);
    p_.network = c_.Enum<sandbox::NetworkMode>(root, "", "network", false,
                                               {{"none", sandbox::NetworkMode::kNone},
                                                {"host", sandbox::NetworkMode::kHost}})
                     .value_or(sandbox::NetworkMode::kNone);
    ReadSeccomp(root);
    ReadNumbers(root);
    ReadEnv(root);
  }

 private:
  void ReadTypeAndCommand(const json& root) {
    const auto type = c_.Enum<SessionType>(root, "", "type", true,
                                           {{"exec", SessionType::kExec},
                                            {"print", SessionType::kPrint},
                                            {"interactive", SessionType::kInteractive}});
    p_.type = type.value_or(SessionType::kExec);
    const bool agent = type && *type != SessionType::kExec;
    if (const json* cmd = c_.Field(root, "", "command", false)) {
      p_.command = c_.Strings(*cmd, "/command");
      for (size_t i = 0; i < p_.command.size(); ++i) {
        if (p_.command[i].empty()) c_.Fail(Pointer("/command", i), "is empty");
      }
      if (!p_.command.empty() && p_.command[0].find('/') != std::string::npos) {
        c_.Path(p_.command[0], "/command/0");
      }
    }
    if (agent && p_.command.empty()) {
      c_.Fail("/command",
              "is required for print and interactive policies (the template the "
              "task is appended to)");
    }
    p_.bypasses_agent_permissions = c_.Bool(root, "", "bypasses_agent_permissions").value_or(false);
    if (agent && root.find("bypasses_agent_permissions") == root.end()) {
      c_.Fail("/bypasses_agent_permissions", "is required for print and interactive policies");
    }
  }

  void ReadRunAs(const json& root) {
    const json* r = c_.Field(root, "", "run_as", true);
    if (r == nullptr || !c_.Object(*r, "/run_as", {"user", "group", "allow_root"})) return;
    p_.run_as.allow_root = c_.Bool(*r, "/run_as", "allow_root").value_or(false);
    auto check = [&](std::string_view key, bool required) -> std::string {
      auto v = c_.String(*r, "/run_as", key, required);
      if (!v) return {};
      const std::string ptr = Pointer("/run_as", key);
      if (!IsAccountName(*v)) {
        c_.Fail(ptr, Quote(*v) + " is not a user or group name (^[a-z_][a-z0-9_.-]{0,31}$)");
      } else if (*v == "root" && !p_.run_as.allow_root) {
        c_.Fail(ptr, "\"root\" is refused unless run_as.allow_root is true");
      }
      return *v;
    };
    p_.run_as.user = check("user", true);
    p_.run_as.group = check("group", false);
  }

  // A list of absolute paths without duplicates (nor "/" when `no_root`).
  std::vector<std::string> PathList(const json& root, std::string_view key, bool no_root = false) {
    std::vector<std::string> out;
    const json* f = c_.Field(root, "", key, false);
    if (f == nullptr) return out;
    const std::string ptr = Pointer("", key);
    const std::vector<std::string> items = c_.Strings(*f, ptr);
    for (size_t i = 0; i < items.size(); ++i) {
      if (!c_.Path(items[i], Pointer(ptr, i))) continue;
      if (no_root && items[i] == "/") {
        c_.Fail(Pointer(ptr, i), "hiding \"/\" would hide everything");
        continue;
      }
      if (std::find(out.begin(), out.end(), items[i]) != out.end()) {
        c_.Fail(Pointer(ptr, i), Quote(items[i]) + " is listed twice");
        continue;
      }
      out.push_back(items[i]);
    }
    return out;
  }

  void ReadPaths(const json& root) {
    // Hidden paths first: the other lists are checked against them.
    p_.hide = PathList(root, "hide", /*no_root=*/true);
    // Room is kept for the workspace roots, which every spawn hides too (up to 16).
    if (p_.hide.size() + kAlwaysHiddenPaths.size() + 16 > sandbox::kMaxHides) {
      c_.Fail("/hide", "at most " +
                           std::to_string(sandbox::kMaxHides - kAlwaysHiddenPaths.size() - 16) +
                           " paths");
    }
    const std::vector<std::string> hidden = p_.HiddenPaths();
    auto hidden_container = [&](std::string_view path) -> const std::string* {
      for (const auto& h : hidden) {
        if (sandbox::PathIsWithin(path, h)) return &h;
      }
      return nullptr;
    };
    // What lands at `path` in the sandbox must not sit where the sandbox mounts over it.
    auto check_target = [&](const std::string& path, std::string_view ptr) {
      if (path == "/" || IsReserved(path)) {
        c_.Fail(ptr, Quote(path) +
                         " is reserved: the sandbox mounts its own /, /proc, /dev "
                         "and /tmp over it");
      } else if (const std::string* h = hidden_container(path)) {
        c_.Fail(ptr, Quote(path) + " lies inside the hidden path " + Quote(*h) +
                         ", which is mounted over it");
      }
    };

    if (const json* w = c_.Field(root, "", "workspace_roots", true)) {
      p_.workspace_roots = PathList(root, "workspace_roots");
      if (w->is_array() && w->empty()) c_.Fail("/workspace_roots", "needs at least one root");
      if (p_.workspace_roots.size() > kMaxWorkspaceRoots) {
        c_.Fail("/workspace_roots", "at most " + std::to_string(kMaxWorkspaceRoots) + " roots");
      }
      for (size_t i = 0; i < p_.workspace_roots.size(); ++i) {
        check_target(p_.workspace_roots[i], Pointer("/workspace_roots", i));
      }
    }
    if (auto d = c_.String(root, "", "default_workspace", false)) {
      if (c_.Path(*d, "/default_workspace")) {
        const bool inside =
            std::any_of(p_.workspace_roots.begin(), p_.workspace_roots.end(),
                        [&](const std::string& r) { return sandbox::PathIsWithin(*d, r); });
        if (!inside) c_.Fail("/default_workspace", Quote(*d) + " lies outside workspace_roots");
        p_.default_workspace = *d;
      }
    }

    std::vector<std::string> targets;
    auto add_target = [&](const std::string& target, std::string_view ptr) {
      check_target(target, ptr);
      if (std::find(targets.begin(), targets.end(), target) != targets.end()) {
        c_.Fail(ptr, "target " + Quote(target) + " is used by another mount or state dir");
      }
      targets.push_back(target);
      for (const auto& r : p_.workspace_roots) {
        if (sandbox::PathIsWithin(target, r)) {
          c_.Fail(ptr, "target " + Quote(target) + " lies inside the workspace root " + Quote(r) +
                           ", where the session's workspace is bound over it");
        }
      }
    };

    if (const json* m = c_.Field(root, "", "mounts", false)) {
      if (!m->is_array()) {
        c_.Fail("/mounts", std::string("must be an array of objects, not ") + m->type_name());
      } else if (m->size() > kMaxListItems) {
        c_.Fail("/mounts", "too many entries");
      } else {
        for (size_t i = 0; i < m->size(); ++i) {
          ReadMount((*m)[i], Pointer("/mounts", i), add_target, hidden);
        }
      }
    }
    p_.state_dirs = PathList(root, "state_dirs");
    for (size_t i = 0; i < p_.state_dirs.size(); ++i) {
      add_target(p_.state_dirs[i], Pointer("/state_dirs", i));
    }
    // One bind is left for the workspace.
    if (p_.mounts.size() + p_.state_dirs.size() + 1 > sandbox::kMaxBinds) {
      c_.Fail("/mounts", "mounts and state_dirs together allow at most " +
                             std::to_string(sandbox::kMaxBinds - 1) + " entries");
    }
  }

  template <typename AddTarget>
  void ReadMount(const json& m, const std::string& ptr, AddTarget& add_target,
                 const std::vector<std::string>& hidden) {
    if (!c_.Object(m, ptr, {"source", "target", "mode"})) return;
    PolicyMount mount;
    auto source = c_.String(m, ptr, "source", true);
    auto target = c_.String(m, ptr, "target", false);
    mount.mode = c_.Enum<sandbox::BindMode>(m, ptr, "mode", false,
                                            {{"ro", sandbox::BindMode::kReadOnly},
                                             {"rw", sandbox::BindMode::kReadWrite}})
                     .value_or(sandbox::BindMode::kReadOnly);
    if (!source || !c_.Path(*source, ptr + "/source")) return;
    mount.source = *source;
    mount.target = target.value_or(*source);
    if (target && !c_.Path(*target, ptr + "/target")) return;
    if (IsReserved(mount.source)) {
      c_.Fail(ptr + "/source", Quote(mount.source) + " lies in /proc, /dev or /tmp of the host");
    }
    for (const auto& h : hidden) {
      // Hidden paths are covered at their path in the sandbox; a bind that shows a hidden
      // tree somewhere else would uncover it.
      if (sandbox::PathIsWithin(mount.source, h) && mount.source != mount.target) {
        c_.Fail(ptr + "/source", Quote(mount.source) + " lies inside the hidden path " + Quote(h));
      } else if (sandbox::PathIsWithin(h, mount.source) && mount.source != mount.target) {
        c_.Fail(ptr + "/target", "the source " + Quote(mount.source) +
                                     " contains the hidden path " + Quote(h) +
                                     ", so it may only be mounted at its own path");
      }
    }
    add_target(mount.target, ptr + (target ? "/target" : "/source"));
    p_.mounts.push_back(std::move(mount));
  }

  void ReadSeccomp(const json& root) {
    p_.seccomp = sandbox::DefaultDenyProfile();
    const json* s = c_.Field(root, "", "seccomp", false);
    const size_t errors_before = c_.error_count();
    if (s != nullptr && c_.Object(*s, "/seccomp",
                                  {"deny", "kill", "allow_new_namespaces", "allow_user_namespaces",
                                   "deny_tty_injection"})) {
      auto names = [&](std::string_view key, std::vector<std::string>& into) {
        const json* f = c_.Field(*s, "/seccomp", key, false);
        if (f == nullptr) return;
        const std::string ptr = Pointer("/seccomp", key);
        const std::vector<std::string> items = c_.Strings(*f, ptr);
        for (size_t i = 0; i < items.size(); ++i) {
          if (items[i] == "@default") {
            c_.Fail(Pointer(ptr, i),
                    "\"@default\" is what every program needs; it cannot be denied");
          } else if (auto r = sandbox::ResolveSyscallEntry(items[i]); !r) {
            c_.Fail(Pointer(ptr, i), r.error().what);
          } else {
            into.push_back(items[i]);
          }
        }
      };
      names("deny", p_.seccomp.deny);
      names("kill", p_.seccomp.kill);
      auto ns = c_.Bool(*s, "/seccomp", "allow_new_namespaces");
      auto userns = c_.Bool(*s, "/seccomp", "allow_user_namespaces");
      auto tty = c_.Bool(*s, "/seccomp", "deny_tty_injection");
      p_.seccomp.allow_new_namespaces = ns.value_or(false);
      p_.seccomp.allow_user_namespaces = userns.value_or(false);
      p_.seccomp.deny_tty_injection = tty.value_or(true);
      if (p_.seccomp.allow_user_namespaces && !p_.seccomp.allow_new_namespaces) {
        c_.Fail("/seccomp/allow_user_namespaces",
                "has no effect unless allow_new_namespaces is true");
      }
    }
    if (c_.error_count() != errors_before) return;
    auto program = sandbox::CompileSeccomp(p_.seccomp);
    if (!program) {
      c_.Fail("/seccomp", program.error().ToString());
      return;
    }
    p_.seccomp_program = std::make_shared<const sandbox::SeccompProgram>(std::move(*program));
  }

  const json* Section(const json& root, std::string_view key,
                      std::initializer_list<std::string_view> known) {
    const json* f = c_.Field(root, "", key, false);
    if (f == nullptr || !c_.Object(*f, Pointer("", key), known)) return nullptr;
    return f;
  }

  void ReadNumbers(const json& root) {
    if (const json* r = Section(root, "rlimits",
                                {"core_bytes", "cpu_seconds", "fsize_bytes", "nofile", "nproc",
                                 "stack_bytes", "as_bytes"})) {
      for (const RlimitField& f : kRlimitFields) {
        p_.rlimits.*f.member = c_.Uint(*r, "/rlimits", f.name, f.range);
      }
    }
    if (const json* l =
            Section(root, "limits",
                    {"memory_max_bytes", "memory_swap_max_bytes", "pids_max", "cpu_max_percent"})) {
      PolicyLimits& L = p_.limits;
      L.memory_max_bytes = c_.Uint(*l, "/limits", "memory_max_bytes", common::kMemoryMaxBytesRange)
                               .value_or(L.memory_max_bytes);
      L.memory_swap_max_bytes =
          c_.Uint(*l, "/limits", "memory_swap_max_bytes", common::kMemorySwapMaxBytesRange)
              .value_or(L.memory_swap_max_bytes);
      L.pids_max = c_.Uint(*l, "/limits", "pids_max", common::kPidsMaxRange).value_or(L.pids_max);
      L.cpu_max_percent = c_.Uint(*l, "/limits", "cpu_max_percent", common::kCpuMaxPercentRange);
    }
    if (const json* d = Section(root, "deadlines", {"wall_seconds", "idle_seconds"})) {
      PolicyDeadlines& D = p_.deadlines;
      D.wall_seconds = c_.Uint(*d, "/deadlines", "wall_seconds", common::kDeadlineSecondsRange)
                           .value_or(D.wall_seconds);
      D.idle_seconds = c_.Uint(*d, "/deadlines", "idle_seconds", common::kDeadlineSecondsRange)
                           .value_or(D.idle_seconds);
    }
    if (const json* o = Section(root, "output",
                                {"ring_bytes", "transcript_max_bytes", "max_rate_bytes_per_second",
                                 "max_rate_window_seconds"})) {
      PolicyOutput& O = p_.output;
      O.ring_bytes =
          c_.Uint(*o, "/output", "ring_bytes", common::kRingBytesRange).value_or(O.ring_bytes);
      O.transcript_max_bytes =
          c_.Uint(*o, "/output", "transcript_max_bytes", common::kTranscriptMaxBytesRange)
              .value_or(O.transcript_max_bytes);
      O.max_rate_bytes_per_second =
          c_.Uint(*o, "/output", "max_rate_bytes_per_second", common::kMaxRateBytesPerSecondRange)
              .value_or(O.max_rate_bytes_per_second);
      O.max_rate_window_seconds =
          c_.Uint(*o, "/output", "max_rate_window_seconds", common::kMaxRateWindowSecondsRange)
              .value_or(O.max_rate_window_seconds);
    }
  }

  // Each name may come from one source only: pass, set, secrets or optional_secrets.
  bool ClaimEnvName(const std::string& name, const std::string& ptr) {
    if (!common::IsEnvName(name)) {
      c_.Fail(ptr, Quote(name) + " is not an environment variable name (" +
                       std::string(common::kEnvNameShape) + ")");
      return false;
    }
    if (!env_names_.insert(name).second) {
      c_.Fail(ptr, Quote(name) +
                       " is already given by env.pass, env.set, env.secrets or "
                       "env.optional_secrets");
      return false;
    }
    return true;
  }

  void ReadEnv(const json& root) {
    if (const json* e = Section(root, "env", {"pass", "set", "secrets", "optional_secrets"})) {
      if (const json* pass = c_.Field(*e, "/env", "pass", false)) {
        const std::vector<std::string> names = c_.Strings(*pass, "/env/pass");
        for (size_t i = 0; i < names.size(); ++i) {
          if (ClaimEnvName(names[i], Pointer("/env/pass", i))) p_.env.pass.push_back(names[i]);
        }
      }
      ReadEnvMap(*e, "set", p_.env.set, [&](const std::string& v, const std::string& ptr) {
        if (v.size() > kMaxEnvValueBytes) {
          c_.Fail(ptr, "is longer than " + std::to_string(kMaxEnvValueBytes) + " bytes");
          return false;
        }
        return true;
      });
      const auto credential_name = [&](const std::string& v, const std::string& ptr) {
        if (!IsCredentialName(v)) {
          c_.Fail(ptr,
                  Quote(v) + " is not a plain file name (^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$)");
          return false;
        }
        return true;
      };
      ReadEnvMap(*e, "secrets", p_.env.secrets, credential_name);
      ReadEnvMap(*e, "optional_secrets", p_.env.optional_secrets, credential_name);
    }
    if (const json* r = Section(root, "request_env", {"allow"})) {
      if (const json* allow = c_.Field(*r, "/request_env", "allow", false)) {
        const std::vector<std::string> names = c_.Strings(*allow, "/request_env/allow");
        for (size_t i = 0; i < names.size(); ++i) {
          const std::string ptr = Pointer("/request_env/allow", i);
          if (!common::IsEnvName(names[i])) {
            c_.Fail(ptr, Quote(names[i]) + " is not an environment variable name");
          } else if (p_.env.secrets.count(names[i]) != 0 ||
                     p_.env.optional_secrets.count(names[i]) != 0) {
            c_.Fail(ptr, Quote(names[i]) + " is a secret (env.secrets or env.optional_secrets); " +
                             "a request may not set it");
          } else if (std::find(p_.request_env_allow.begin(), p_.request_env_allow.end(),
                               names[i]) != p_.request_env_allow.end()) {
            c_.Fail(ptr, Quote(names[i]) + " is listed twice");
          } else {
            p_.request_env_allow.push_back(names[i]);
          }
        }
      }
    }
  }

  template <typename CheckValue>
  void ReadEnvMap(const json& env, std::string_view key, std::map<std::string, std::string>& into,
                  CheckValue check_value) {
    const json* f = c_.Field(env, "/env", key, false);
    const std::string ptr = Pointer("/env", key);
    if (f == nullptr) return;
    if (!f->is_object()) {
      c_.Fail(ptr, std::string("must be an object of strings, not ") + f->type_name());
      return;
    }
    for (auto it = f->begin(); it != f->end(); ++it) {
      const std::string p = Pointer(ptr, it.key());
      auto v = c_.String(it.value(), p);
      if (!ClaimEnvName(it.key(), p) || !v || !check_value(*v, p)) continue;
      into.emplace(it.key(), *v);
    }
  }

  Checker& c_;
  Policy& p_;
  std::set<std::string> env_names_;
};

// "DIR/NAME.json" -> "NAME", or nullopt when the file name does not end in ".json".
std::optional<std::string> PolicyNameOf(std::string_view file) {
  const size_t slash = file.rfind('/');
  std::string_view base = slash == std::string_view::npos ? file : file.substr(slash + 1);
  if (!base.ends_with(".json")) return std::nullopt;
  base.remove_suffix(5);
  return std::string(base);
}

}  // namespace

using internal::Checker;
using internal::DuplicateKeyFinder;
using internal::kMaxPolicyFileBytes;
using internal::Quote;

PolicyLoad ParsePolicy(std::string_view file, std::string_view text) {
  Checker c{std::string(file)};
  auto policy = std::make_shared<Policy>();
  policy->file = std::string(file);
  const std::optional<std::string> name = PolicyNameOf(file);
  if (!name) {
    c.Fail("", "a policy file is named NAME.json");
  } else if (!common::IsPresetName(*name)) {
    c.Fail("",
           "policy name " + Quote(*name) + " must match " + std::string(common::kPresetNameShape));
  } else {
    policy->name = *name;
  }
  if (text.size() > kMaxPolicyFileBytes) {
    c.Fail("", "is larger than " + std::to_string(kMaxPolicyFileBytes) + " bytes");
    return {nullptr, c.TakeErrors()};
  }
  DuplicateKeyFinder dups;
  json root;
  try {
    root = json::parse(text.begin(), text.end(), std::ref(dups), /*allow_exceptions=*/true,
                       /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    constexpr std::string_view kAt = "parse error at ";
    if (size_t at = what.find(kAt); at != std::string::npos) what = what.substr(at + kAt.size());
    c.Fail("", "invalid JSON: " + what);
    return {nullptr, c.TakeErrors()};
  }
  for (const auto& ptr : dups.duplicates_) c.Fail(ptr, "field given twice");
  try {
    PolicyReader(c, *policy).Read(root);
  } catch (const json::exception& e) {  // type checks come first; this is a backstop
    c.Fail("", std::string("internal error while reading: ") + e.what());
  }
  std::vector<std::string> errors = c.TakeErrors();
  if (!errors.empty()) return {nullptr, std::move(errors)};
  return {std::move(policy), {}};
}

}  // namespace mp::supervisor
