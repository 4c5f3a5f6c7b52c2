// The policy loader: one policy file's JSON document validated field by field into a Policy
// (ParsePolicy). Every problem is collected; the file and directory reading around it is in
// policy_set.cc, the field reference in docs/policies.md.
#include <algorithm>
#include <array>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "common/json_strict.h"
#include "common/limits.h"
#include "common/names.h"
#include "common/vocabulary.h"
#include "egress/handover.h"
#include "egress/upstream_url.h"
#include "sandbox/mounts.h"
#include "sandbox/syscall_groups.h"
#include "supervisor/policy.h"
#include "supervisor/policy_internal.h"

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
bool IsPlainPrintable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}
bool IsAccountName(std::string_view s) { return Matches(s, "a-z_", "a-z0-9_.-", 32); }

// Names that point a client's traffic elsewhere: proxy variables (HTTPS_PROXY, all_proxy,
// NO_PROXY, ...) and API base URLs (ANTHROPIC_BASE_URL, OPENAI_BASE_URL, ...), in any case.
// A request may set none of them: with one, a task could send the agent's requests and the
// key they carry to a server of its choosing.
bool RedirectsTraffic(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) {
    if (name.size() < suffix.size()) return false;
    return std::equal(suffix.begin(), suffix.end(), name.end() - suffix.size(),
                      [](char s, char n) { return s == (n >= 'a' && n <= 'z' ? n - 32 : n); });
  };
  return ends_with("_PROXY") || ends_with("_BASE_URL");
}

bool IsReserved(std::string_view path) {
  return std::any_of(std::begin(kReservedPaths), std::end(kReservedPaths),
                     [&](std::string_view r) { return sandbox::PathIsWithin(path, r); });
}

// Strings in a policy file: at most the file's size, no NUL byte (every string becomes an
// argv entry, a path or an environment value).
constexpr wire::StringRule kAnyString{0, kMaxPolicyFileBytes};
constexpr wire::StringRule kEnvNameRule{1, common::kMaxEnvNameBytes, common::IsEnvName,
                                        common::kEnvNameIs};
constexpr wire::StringRule kEnvValueRule{0, kMaxEnvValueBytes};
constexpr wire::StringRule kCredentialNameRule{
    1, 128, IsCredentialName, "a plain file name (^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$)"};
constexpr std::string_view kBindModeNames[] = {"ro", "rw"};  // sandbox::BindMode order
constexpr wire::StringRule kHeaderNameRule{
    1, egress::kMaxEndpointHeaderBytes, egress::IsHeaderToken,
    "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"};
constexpr wire::StringRule kHeaderPrefixRule{0, 64, IsPlainPrintable,
                                             "printable ASCII (no control characters)"};

template <typename E, size_t N>
std::optional<E> OptEnum(wire::ObjectReader& r, std::string_view key,
                         const std::array<std::string_view, N>& names) {
  const std::optional<size_t> i = r.OptEnum(key, names);
  if (!i) return std::nullopt;
  return static_cast<E>(*i);
}

// Validation of one parsed document into `p`: strict typed reads (common/json_strict), then
// the rules that relate fields to each other. Every problem goes to `errors`.
class PolicyReader {
 public:
  PolicyReader(wire::FieldErrors& errors, Policy& p) : errors_(errors), p_(p) {}

  void Read(const json& root) {
    wire::ObjectReader r(root, "", &errors_);
    if (!r.is_object()) return;
    p_.description = r.String("description", {1, 1024});
    ReadTypeAndCommand(r);
    ReadRunAs(r);
    ReadWorkspaceOwner(r);
    ReadPaths(r);
    ReadNetwork(root, r);
    ReadSeccomp(r);
    ReadNumbers(r);
    ReadEnv(r);
    r.RejectUnknownNamingKnown();
  }

 private:
  void Fail(const std::string& pointer, std::string reason) {
    errors_.Add(pointer, std::move(reason));
  }
  // An absolute, normalised path (sandbox::CheckPathSyntax).
  bool CheckPath(const std::string& path, const std::string& pointer) {
    auto ok = sandbox::CheckPathSyntax(path, "path");
    if (!ok) Fail(pointer, ok.error().what);
    return ok.has_value();
  }

  void ReadTypeAndCommand(wire::ObjectReader& r) {
    const size_t errors_before = errors_.count();
    const bool type_given = r.Has("type");
    p_.type = static_cast<SessionType>(r.Enum("type", common::kSessionTypeNames));
    const bool agent =
        type_given && errors_.count() == errors_before && p_.type != SessionType::kExec;
    p_.command = r.StringArray("command", kMaxListItems, kAnyString);
    for (size_t i = 0; i < p_.command.size(); ++i) {
      if (p_.command[i].empty()) Fail("/command/" + std::to_string(i), "is empty");
    }
    if (!p_.command.empty() && p_.command[0].find('/') != std::string::npos) {
      CheckPath(p_.command[0], "/command/0");
    }
    if (agent && p_.command.empty()) {
      Fail("/command",
           "is required for print and interactive policies (the template the task is "
           "appended to)");
    }
    ReadOwnCommandTypes(r);
    p_.bypasses_agent_permissions = r.OptBool("bypasses_agent_permissions").value_or(false);
    if (agent && !r.Has("bypasses_agent_permissions")) {
      Fail("/bypasses_agent_permissions", "is required for print and interactive policies");
    }
  }

  // Session types beyond `type` that a request may start here with its own command.
  void ReadOwnCommandTypes(wire::ObjectReader& r) {
    const std::vector<std::string> names =
        r.StringArray("own_command_types", kMaxListItems, kAnyString);
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string at = "/own_command_types/" + std::to_string(i);
      const auto* found =
          std::find(common::kSessionTypeNames.begin(), common::kSessionTypeNames.end(), names[i]);
      if (found == common::kSessionTypeNames.end()) {
        Fail(at, Quote(names[i]) + " is not a session type (print, interactive)");
        continue;
      }
      const auto type =
          static_cast<SessionType>(std::distance(common::kSessionTypeNames.begin(), found));
      if (type == SessionType::kExec || type == p_.type) {
        Fail(at, Quote(names[i]) +
                     " sessions may always use a policy of their type; list only "
                     "print or interactive, and not the policy's own type");
      } else if (std::find(p_.own_command_types.begin(), p_.own_command_types.end(), type) !=
                 p_.own_command_types.end()) {
        Fail(at, Quote(names[i]) + " is listed twice");
      } else {
        p_.own_command_types.push_back(type);
      }
    }
    if (!p_.own_command_types.empty() && !p_.command.empty()) {
      Fail("/own_command_types",
           "needs an empty command: a policy with a command template runs only that command");
    }
  }

  // `network`: "none" | "host", or {"mode": "none" | "host" | "allowlist", "allow": [...]}.
  // The string "allowlist" is refused: a list that allows nothing must be written out.
  void ReadNetwork(const json& root, wire::ObjectReader& r) {
    p_.network = sandbox::NetworkMode::kNone;
    const auto member = root.find("network");
    if (member == root.end() || !member->is_object()) {
      const size_t errors_before = errors_.count();
      p_.network = OptEnum<sandbox::NetworkMode>(r, "network", common::kNetworkModeNames)
                       .value_or(sandbox::NetworkMode::kNone);
      if (errors_.count() == errors_before && p_.network == sandbox::NetworkMode::kAllowlist) {
        Fail("/network",
             "\"allowlist\" needs its list: write {\"mode\": \"allowlist\", \"allow\": "
             "[\"api.example.com:443\", ...]}");
        p_.network = sandbox::NetworkMode::kNone;
      }
      return;
    }
    wire::ObjectReader n = r.Object("network");
    const size_t errors_before = errors_.count();
    p_.network = static_cast<sandbox::NetworkMode>(n.Enum("mode", common::kNetworkModeNames));
    const bool mode_ok = errors_.count() == errors_before;
    const bool has_allow = n.Has("allow");
    const std::vector<std::string> allow = n.StringArray("allow", kMaxListItems, kAnyString);
    const bool has_gateway = n.Has("gateway");
    ReadGateway(n);
    n.RejectUnknownNamingKnown();
    if (!mode_ok) {
      p_.network = sandbox::NetworkMode::kNone;
      return;
    }
    if (p_.network != sandbox::NetworkMode::kAllowlist) {
      if (has_gateway) {
        Fail("/network/gateway",
             "is only for \"mode\": \"allowlist\": its endpoints listen in the session's own "
             "network namespace");
        p_.gateway.clear();
      }
      if (has_allow) {
        Fail("/network/allow",
             "is only for \"mode\": \"allowlist\" (\"none\" reaches nothing, \"host\" "
             "everything)");
      }
      return;
    }
    if (!has_allow) {
      Fail("/network/allow", "is required for \"mode\": \"allowlist\" (write [] to allow nothing)");
    }
    for (size_t i = 0; i < allow.size(); ++i) {
      auto rule = egress::ParseAllowRule(allow[i]);
      if (!rule) Fail("/network/allow/" + std::to_string(i), rule.error().what);
    }
    auto list = egress::AllowList::Parse(allow);
    if (list) p_.network_allow = std::move(*list);
  }

  // `network.gateway`: [{"base_url_env", "key_env"?, "upstream", "auth": {"header", "prefix"?,
  // "secret"}}]. The names it sets are claimed like env's (one source per name).
  void ReadGateway(wire::ObjectReader& n) {
    const size_t count = n.Array("gateway", egress::kMaxGatewayEndpoints, false);
    for (size_t i = 0; i < count; ++i) {
      const std::string ptr = "/network/gateway/" + std::to_string(i);
      wire::ObjectReader e = n.ObjectItem("gateway", i);
      if (!e.is_object()) continue;
      const size_t errors_before = errors_.count();
      GatewayEndpoint g;
      g.base_url_env = e.String("base_url_env", kEnvNameRule);
      g.key_env = e.OptString("key_env", kEnvNameRule).value_or("");
      g.upstream = e.String("upstream", kAnyString);
      wire::ObjectReader a = e.Object("auth");
      if (a.is_object()) {
        g.header = a.String("header", kHeaderNameRule);
        g.prefix = a.OptString("prefix", kHeaderPrefixRule).value_or("");
        g.secret = a.String("secret", kCredentialNameRule);
        a.RejectUnknownNamingKnown();
      }
      e.RejectUnknownNamingKnown();
      if (errors_.count() != errors_before) continue;
      if (auto url = egress::ParseUpstreamUrl(g.upstream); !url) {
        Fail(ptr + "/upstream", url.error().what);
        continue;
      }
      if (!egress::IsCredentialHeaderName(g.header)) {
        Fail(ptr + "/auth/header", Quote(g.header) +
                                       " cannot carry a credential (Host, "
                                       "Content-Length, Transfer-Encoding and "
                                       "Connection are the gateway's)");
        continue;
      }
      if (!ClaimEnvName(g.base_url_env, ptr + "/base_url_env")) continue;
      if (!g.key_env.empty() && !ClaimEnvName(g.key_env, ptr + "/key_env")) continue;
      gateway_names_.insert(g.base_url_env);
      if (!g.key_env.empty()) gateway_names_.insert(g.key_env);
      p_.gateway.push_back(std::move(g));
    }
  }

  void ReadRunAs(wire::ObjectReader& root) {
    wire::ObjectReader r = root.Object("run_as");
    if (!r.is_object()) return;
    p_.run_as.allow_root = r.OptBool("allow_root").value_or(false);
    auto check = [&](std::string_view key, std::optional<std::string> v) -> std::string {
      if (!v) return {};
      const std::string ptr = wire::AppendPointer("/run_as", key);
      if (!IsAccountName(*v)) {
        Fail(ptr, Quote(*v) + " is not a user or group name (^[a-z_][a-z0-9_.-]{0,31}$)");
      } else if (*v == "root" && !p_.run_as.allow_root) {
        Fail(ptr, "\"root\" is refused unless run_as.allow_root is true");
      }
      return *v;
    };
    r.Require("user");
    p_.run_as.user = check("user", r.OptString("user", kAnyString));
    p_.run_as.group = check("group", r.OptString("group", kAnyString));
    r.RejectUnknownNamingKnown();
  }

  void ReadWorkspaceOwner(wire::ObjectReader& root) {
    auto r = root.OptObject("workspace_owner");
    if (!r || !r->is_object()) return;
    auto check = [&](std::string_view key, std::optional<std::string> v) -> std::string {
      if (!v) return {};
      const std::string ptr = wire::AppendPointer("/workspace_owner", key);
      if (!IsAccountName(*v)) {
        Fail(ptr, Quote(*v) + " is not a user or group name (^[a-z_][a-z0-9_.-]{0,31}$)");
      } else if (*v == "root" && !p_.run_as.allow_root) {
        Fail(ptr, "\"root\" is refused unless run_as.allow_root is true");
      }
      return *v;
    };
    r->Require("user");
    p_.workspace_owner.user = check("user", r->OptString("user", kAnyString));
    p_.workspace_owner.group = check("group", r->OptString("group", kAnyString));
    r->RejectUnknownNamingKnown();
  }

  // A list of absolute paths without duplicates (nor "/" when `no_root`).
  std::vector<std::string> PathList(wire::ObjectReader& r, std::string_view key,
                                    bool no_root = false) {
    std::vector<std::string> out;
    const std::string ptr = wire::AppendPointer(r.pointer(), key);
    const std::vector<std::string> items = r.StringArray(key, kMaxListItems, kAnyString);
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string at = ptr + "/" + std::to_string(i);
      if (!CheckPath(items[i], at)) continue;
      if (no_root && items[i] == "/") {
        Fail(at, "hiding \"/\" would hide everything");
        continue;
      }
      if (std::find(out.begin(), out.end(), items[i]) != out.end()) {
        Fail(at, Quote(items[i]) + " is listed twice");
        continue;
      }
      out.push_back(items[i]);
    }
    return out;
  }

  void ReadPaths(wire::ObjectReader& r) {
    // Hidden paths first: the other lists are checked against them.
    p_.hide = PathList(r, "hide", /*no_root=*/true);
    // Room is kept for the workspace roots, which every spawn hides too (up to 16).
    if (p_.hide.size() + kAlwaysHiddenPaths.size() + 16 > sandbox::kMaxHides) {
      Fail("/hide", "at most " +
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
    auto check_target = [&](const std::string& path, const std::string& ptr) {
      if (path == "/" || IsReserved(path)) {
        Fail(ptr, Quote(path) +
                      " is reserved: the sandbox mounts its own /, /proc, /dev "
                      "and /tmp over it");
      } else if (const std::string* h = hidden_container(path)) {
        Fail(ptr, Quote(path) + " lies inside the hidden path " + Quote(*h) +
                      ", which is mounted over it");
      }
    };

    const size_t errors_before = errors_.count();
    const bool roots_given = r.Require("workspace_roots");
    p_.workspace_roots = PathList(r, "workspace_roots");
    if (roots_given && p_.workspace_roots.empty() && errors_.count() == errors_before) {
      Fail("/workspace_roots", "needs at least one root");
    }
    if (p_.workspace_roots.size() > kMaxWorkspaceRoots) {
      Fail("/workspace_roots", "at most " + std::to_string(kMaxWorkspaceRoots) + " roots");
    }
    for (size_t i = 0; i < p_.workspace_roots.size(); ++i) {
      check_target(p_.workspace_roots[i], "/workspace_roots/" + std::to_string(i));
    }
    if (auto d = r.OptString("default_workspace", kAnyString)) {
      if (CheckPath(*d, "/default_workspace")) {
        const bool inside =
            std::any_of(p_.workspace_roots.begin(), p_.workspace_roots.end(),
                        [&](const std::string& root) { return sandbox::PathIsWithin(*d, root); });
        const bool is_root = std::find(p_.workspace_roots.begin(), p_.workspace_roots.end(), *d) !=
                             p_.workspace_roots.end();
        if (!inside) Fail("/default_workspace", Quote(*d) + " lies outside workspace_roots");
        // A session's workspace is bound in after every root is covered: a root as workspace
        // would show the session every workspace under it.
        if (is_root) {
          Fail("/default_workspace",
               Quote(*d) + " is a workspace root; make it a directory below one, e.g. " +
                   Quote(*d + "/default"));
        }
        p_.default_workspace = *d;
      }
    }

    std::vector<std::string> targets;
    auto add_target = [&](const std::string& target, const std::string& ptr) {
      check_target(target, ptr);
      if (std::find(targets.begin(), targets.end(), target) != targets.end()) {
        Fail(ptr, "target " + Quote(target) + " is used by another mount or state dir");
      }
      targets.push_back(target);
      for (const auto& root : p_.workspace_roots) {
        if (sandbox::PathIsWithin(target, root)) {
          Fail(ptr, "target " + Quote(target) + " lies inside the workspace root " + Quote(root) +
                        ", where the session's workspace is bound over it");
        }
      }
    };

    const size_t mounts = r.Array("mounts", kMaxListItems, /*required=*/false);
    for (size_t i = 0; i < mounts; ++i) {
      wire::ObjectReader m = r.ObjectItem("mounts", i);
      ReadMount(m, add_target, hidden);
    }
    p_.state_dirs = PathList(r, "state_dirs");
    for (size_t i = 0; i < p_.state_dirs.size(); ++i) {
      add_target(p_.state_dirs[i], "/state_dirs/" + std::to_string(i));
    }
    ReadHome(r);
    // One bind is left for the workspace.
    if (p_.mounts.size() + p_.state_dirs.size() + 1 > sandbox::kMaxBinds) {
      Fail("/mounts", "mounts and state_dirs together allow at most " +
                          std::to_string(sandbox::kMaxBinds - 1) + " entries");
    }
  }

  // home: the state dir a session gets a writable home over (docs/policies.md, "Homes").
  void ReadHome(wire::ObjectReader& root) {
    auto h = root.OptObject("home");
    if (!h || !h->is_object()) return;
    h->Require("dir");
    const std::optional<std::string> dir = h->OptString("dir", kAnyString);
    p_.home.keep = OptEnum<HomeKeep>(*h, "keep", kHomeKeepNames).value_or(HomeKeep::kSession);
    ReadUint(*h, "max_bytes", kHomeMaxBytesRange, &p_.home.max_bytes);
    h->RejectUnknownNamingKnown();
    if (!dir || !CheckPath(*dir, "/home/dir")) return;
    if (std::find(p_.state_dirs.begin(), p_.state_dirs.end(), *dir) == p_.state_dirs.end()) {
      Fail("/home/dir", Quote(*dir) +
                            " is not one of state_dirs; list it there too (the home "
                            "is seeded from that state dir)");
      return;
    }
    p_.home.dir = *dir;
  }

  template <typename AddTarget>
  void ReadMount(wire::ObjectReader& m, AddTarget& add_target,
                 const std::vector<std::string>& hidden) {
    if (!m.is_object()) return;
    const std::string& ptr = m.pointer();
    PolicyMount mount;
    m.Require("source");
    const std::optional<std::string> source = m.OptString("source", kAnyString);
    std::optional<std::string> target = m.OptString("target", kAnyString);
    mount.mode = static_cast<sandbox::BindMode>(m.OptEnum("mode", kBindModeNames).value_or(0));
    m.RejectUnknownNamingKnown();
    if (!source || !CheckPath(*source, ptr + "/source")) return;
    mount.source = *source;
    mount.target = target.value_or(*source);
    if (target && !CheckPath(*target, ptr + "/target")) return;
    if (IsReserved(mount.source)) {
      Fail(ptr + "/source", Quote(mount.source) + " lies in /proc, /dev or /tmp of the host");
    }
    for (const auto& h : hidden) {
      // Hidden paths are covered at their path in the sandbox; a bind that shows a hidden
      // tree somewhere else would uncover it.
      if (sandbox::PathIsWithin(mount.source, h) && mount.source != mount.target) {
        Fail(ptr + "/source", Quote(mount.source) + " lies inside the hidden path " + Quote(h));
      } else if (sandbox::PathIsWithin(h, mount.source) && mount.source != mount.target) {
        Fail(ptr + "/target", "the source " + Quote(mount.source) + " contains the hidden path " +
                                  Quote(h) + ", so it may only be mounted at its own path");
      }
    }
    add_target(mount.target, ptr + (target ? "/target" : "/source"));
    p_.mounts.push_back(std::move(mount));
  }

  void ReadSeccomp(wire::ObjectReader& root) {
    p_.seccomp = sandbox::DefaultDenyProfile();
    const size_t errors_before = errors_.count();
    if (std::optional<wire::ObjectReader> s = root.OptObject("seccomp"); s && s->is_object()) {
      auto names = [&](std::string_view key, std::vector<std::string>& into) {
        const std::string ptr = wire::AppendPointer("/seccomp", key);
        const std::vector<std::string> items = s->StringArray(key, kMaxListItems, kAnyString);
        for (size_t i = 0; i < items.size(); ++i) {
          const std::string at = ptr + "/" + std::to_string(i);
          if (items[i] == "@default") {
            Fail(at, "\"@default\" is what every program needs; it cannot be denied");
          } else if (auto resolved = sandbox::ResolveSyscallEntry(items[i]); !resolved) {
            Fail(at, resolved.error().what);
          } else {
            into.push_back(items[i]);
          }
        }
      };
      names("deny", p_.seccomp.deny);
      names("kill", p_.seccomp.kill);
      p_.seccomp.allow_new_namespaces = s->OptBool("allow_new_namespaces").value_or(false);
      p_.seccomp.allow_user_namespaces = s->OptBool("allow_user_namespaces").value_or(false);
      p_.seccomp.deny_tty_injection = s->OptBool("deny_tty_injection").value_or(true);
      s->RejectUnknownNamingKnown();
      if (p_.seccomp.allow_user_namespaces && !p_.seccomp.allow_new_namespaces) {
        Fail("/seccomp/allow_user_namespaces", "has no effect unless allow_new_namespaces is true");
      }
    }
    if (errors_.count() != errors_before) return;
    auto program = sandbox::CompileSeccomp(p_.seccomp);
    if (!program) {
      Fail("/seccomp", program.error().ToString());
      return;
    }
    p_.seccomp_program = std::make_shared<const sandbox::SeccompProgram>(std::move(*program));
  }

  // `*value` = the member `key` when present and valid; the default stays otherwise.
  template <typename T>
  static void ReadUint(wire::ObjectReader& r, std::string_view key, common::UintRange range,
                       T* value) {
    if (auto v = r.OptUint(key, range)) *value = *v;
  }

  void ReadNumbers(wire::ObjectReader& root) {
    if (auto r = root.OptObject("rlimits"); r && r->is_object()) {
      for (const RlimitField& f : kRlimitFields) p_.rlimits.*f.member = r->OptUint(f.name, f.range);
      r->RejectUnknownNamingKnown();
    }
    if (auto l = root.OptObject("limits"); l && l->is_object()) {
      PolicyLimits& L = p_.limits;
      ReadUint(*l, "memory_max_bytes", common::kMemoryMaxBytesRange, &L.memory_max_bytes);
      ReadUint(*l, "memory_swap_max_bytes", common::kMemorySwapMaxBytesRange,
               &L.memory_swap_max_bytes);
      ReadUint(*l, "pids_max", common::kPidsMaxRange, &L.pids_max);
      ReadUint(*l, "pty_max", common::kPtyMaxRange, &L.pty_max);
      L.cpu_max_percent = l->OptUint("cpu_max_percent", common::kCpuMaxPercentRange);
      l->RejectUnknownNamingKnown();
    }
    if (auto d = root.OptObject("deadlines"); d && d->is_object()) {
      ReadUint(*d, "wall_seconds", common::kDeadlineSecondsRange, &p_.deadlines.wall_seconds);
      ReadUint(*d, "idle_seconds", common::kDeadlineSecondsRange, &p_.deadlines.idle_seconds);
      d->RejectUnknownNamingKnown();
    }
    if (auto o = root.OptObject("output"); o && o->is_object()) {
      PolicyOutput& O = p_.output;
      ReadUint(*o, "ring_bytes", common::kRingBytesRange, &O.ring_bytes);
      ReadUint(*o, "transcript_max_bytes", common::kTranscriptMaxBytesRange,
               &O.transcript_max_bytes);
      ReadUint(*o, "max_rate_bytes_per_second", common::kMaxRateBytesPerSecondRange,
               &O.max_rate_bytes_per_second);
      ReadUint(*o, "max_rate_window_seconds", common::kMaxRateWindowSecondsRange,
               &O.max_rate_window_seconds);
      O.on_flood = OptEnum<common::FloodAction>(*o, "on_flood", common::kFloodActionNames)
                       .value_or(common::FloodAction::kThrottle);
      o->RejectUnknownNamingKnown();
    }
  }

  // Each name may come from one source only: pass, set, secrets or optional_secrets.
  bool ClaimEnvName(const std::string& name, const std::string& ptr) {
    if (!env_names_.insert(name).second) {
      Fail(ptr, Quote(name) +
                    " is already given by env.pass, env.set, env.secrets, env.optional_secrets "
                    "or network.gateway");
      return false;
    }
    return true;
  }

  // A map of env name -> value; names already claimed by another source are refused.
  std::map<std::string, std::string> EnvMap(wire::ObjectReader& env, std::string_view key,
                                            const wire::StringRule& value_rule) {
    std::map<std::string, std::string> out =
        env.StringMap(key, kMaxListItems, kEnvNameRule, value_rule);
    const std::string ptr = wire::AppendPointer("/env", key);
    for (auto it = out.begin(); it != out.end();) {
      it = ClaimEnvName(it->first, wire::AppendPointer(ptr, it->first)) ? std::next(it)
                                                                        : out.erase(it);
    }
    return out;
  }

  void ReadEnv(wire::ObjectReader& root) {
    if (auto e = root.OptObject("env"); e && e->is_object()) {
      const std::vector<std::string> pass = e->StringArray("pass", kMaxListItems, kEnvNameRule);
      for (size_t i = 0; i < pass.size(); ++i) {
        if (ClaimEnvName(pass[i], "/env/pass/" + std::to_string(i))) p_.env.pass.push_back(pass[i]);
      }
      p_.env.set = EnvMap(*e, "set", kEnvValueRule);
      p_.env.secrets = EnvMap(*e, "secrets", kCredentialNameRule);
      p_.env.optional_secrets = EnvMap(*e, "optional_secrets", kCredentialNameRule);
      e->RejectUnknownNamingKnown();
    }
    if (auto r = root.OptObject("request_env"); r && r->is_object()) {
      const std::vector<std::string> names = r->StringArray("allow", kMaxListItems, kEnvNameRule);
      for (size_t i = 0; i < names.size(); ++i) {
        const std::string ptr = "/request_env/allow/" + std::to_string(i);
        if (p_.env.secrets.count(names[i]) != 0 || p_.env.optional_secrets.count(names[i]) != 0) {
          Fail(ptr, Quote(names[i]) + " is a secret (env.secrets or env.optional_secrets); " +
                        "a request may not set it");
        } else if (gateway_names_.count(names[i]) != 0) {
          Fail(ptr, Quote(names[i]) +
                        " is set by network.gateway (the endpoint on the session's loopback, or "
                        "its placeholder key); a request may not set it");
        } else if (RedirectsTraffic(names[i])) {
          Fail(ptr, Quote(names[i]) +
                        " names a proxy or an API base URL: a request could send the session's "
                        "traffic, and the credentials in it, elsewhere; set it in env.set, or "
                        "reach a model API through network.gateway");
        } else if (std::find(p_.request_env_allow.begin(), p_.request_env_allow.end(), names[i]) !=
                   p_.request_env_allow.end()) {
          Fail(ptr, Quote(names[i]) + " is listed twice");
        } else {
          p_.request_env_allow.push_back(names[i]);
        }
      }
      r->RejectUnknownNamingKnown();
    }
  }

  wire::FieldErrors& errors_;
  Policy& p_;
  std::set<std::string> env_names_;
  std::set<std::string> gateway_names_;  // env names network.gateway sets
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

using internal::kMaxPolicyFileBytes;
using internal::Quote;

PolicyLoad ParsePolicy(std::string_view file, std::string_view text) {
  // Every error of the file is kept: its size bounds their number.
  wire::FieldErrors errors(kMaxPolicyFileBytes);
  auto listed = [&] {
    std::vector<std::string> out;
    for (const wire::FieldError& e : errors.kept()) {
      out.push_back(std::string(file) + (e.pointer.empty() ? "" : ":" + e.pointer) + ": " +
                    e.reason);
    }
    return out;
  };
  auto policy = std::make_shared<Policy>();
  policy->file = std::string(file);
  const std::optional<std::string> name = PolicyNameOf(file);
  if (!name) {
    errors.Add("", "a policy file is named NAME.json");
  } else if (!common::IsPresetName(*name)) {
    errors.Add(
        "", "policy name " + Quote(*name) + " must match " + std::string(common::kPresetNameShape));
  } else {
    policy->name = *name;
  }
  if (text.size() > kMaxPolicyFileBytes) {
    errors.Add("", "is larger than " + std::to_string(kMaxPolicyFileBytes) + " bytes");
    return {nullptr, listed()};
  }
  json root;
  if (auto parsed = wire::ParseJson(text, &root, {.max_depth = 16, .allow_comments = true});
      !parsed) {
    errors.Add("", parsed.error().what);
    return {nullptr, listed()};
  }
  PolicyReader(errors, *policy).Read(root);
  if (!errors.empty()) return {nullptr, listed()};
  return {std::move(policy), {}};
}

}  // namespace mp::supervisor
