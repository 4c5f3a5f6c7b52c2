#include "supervisor/policy.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "common/unique_fd.h"
#include "sandbox/mounts.h"
#include "sandbox/syscall_groups.h"

namespace mp::supervisor {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxBytes = 1ull << 60;  // upper bound of every *_bytes field (1 EiB)
constexpr size_t kMaxPolicyFileBytes = 1 << 20;
constexpr size_t kMaxSecretBytes = 64 << 10;
constexpr size_t kMaxEnvValueBytes = 32 << 10;
// execve refuses a single argument of MAX_ARG_STRLEN (32 pages) or more with E2BIG.
constexpr size_t kMaxTaskBytes = 32 * 4096 - 1;
constexpr size_t kMaxListItems = 256;
constexpr size_t kMaxWorkspaceRoots = 16;

struct Range {
  uint64_t min;
  uint64_t max;
};
constexpr Range kMemoryMaxRange{16ull << 20, kMaxBytes};
constexpr Range kSwapMaxRange{0, kMaxBytes};
constexpr Range kPidsMaxRange{8, 4194304};  // PID_MAX_LIMIT on 64-bit
constexpr Range kCpuPercentRange{1, 100000};
constexpr Range kDeadlineRange{0, uint64_t{30} * 86400};

// Targets a bind may not use: the sandbox mounts its own /proc, /dev and /tmp after the binds,
// which would cover them. Sources there would expose host processes or devices.
constexpr std::string_view kReservedPaths[] = {"/proc", "/dev", "/tmp"};

struct RlimitField {
  std::string_view name;
  int resource;
  std::optional<uint64_t> PolicyRlimits::*member;
  Range range;
};
const RlimitField kRlimitFields[] = {
    {"core_bytes", RLIMIT_CORE, &PolicyRlimits::core_bytes, {0, kMaxBytes}},
    {"cpu_seconds", RLIMIT_CPU, &PolicyRlimits::cpu_seconds, {1, uint64_t{30} * 86400}},
    {"fsize_bytes", RLIMIT_FSIZE, &PolicyRlimits::fsize_bytes, {4096, kMaxBytes}},
    {"nofile", RLIMIT_NOFILE, &PolicyRlimits::nofile, {16, 1048576}},  // fs.nr_open default
    {"nproc", RLIMIT_NPROC, &PolicyRlimits::nproc, {8, 4194304}},
    {"stack_bytes", RLIMIT_STACK, &PolicyRlimits::stack_bytes, {128 << 10, 1ull << 30}},
    {"as_bytes", RLIMIT_AS, &PolicyRlimits::as_bytes, {64ull << 20, kMaxBytes}},
};

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
bool IsPolicyName(std::string_view s) { return Matches(s, "a-z0-9", "a-z0-9-", 64); }
bool IsEnvName(std::string_view s) { return Matches(s, "A-Za-z_", "A-Za-z0-9_", 128); }
bool IsCredentialName(std::string_view s) { return Matches(s, "A-Za-z0-9_", "A-Za-z0-9._-", 128); }
bool IsAccountName(std::string_view s) { return Matches(s, "a-z_", "a-z0-9_.-", 32); }

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string JoinQuoted(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + Quote(i);
  return out;
}

// RFC 6901: "~" -> "~0", "/" -> "~1".
std::string Pointer(std::string_view parent, std::string_view token) {
  std::string out(parent);
  out += '/';
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}
std::string Pointer(std::string_view parent, size_t index) {
  return std::string(parent) + "/" + std::to_string(index);
}

Error Coded(std::string_view code, const std::string& what, int errnum = 0) {
  return Error{errnum, std::string(code) + ": " + what};
}

bool IsReserved(std::string_view path) {
  return std::any_of(std::begin(kReservedPaths), std::end(kReservedPaths),
                     [&](std::string_view r) { return sandbox::PathIsWithin(path, r); });
}

// Collects every problem of one file (sticky errors) and reads typed fields.
class Checker {
 public:
  explicit Checker(std::string file) : file_(std::move(file)) {}

  void Fail(std::string_view ptr, const std::string& reason) {
    errors_.push_back(file_ + (ptr.empty() ? "" : ":" + std::string(ptr)) + ": " + reason);
  }
  [[nodiscard]] size_t error_count() const { return errors_.size(); }
  std::vector<std::string> TakeErrors() { return std::move(errors_); }

  // True when `j` is an object; reports its unknown keys.
  bool Object(const json& j, std::string_view ptr, std::initializer_list<std::string_view> known) {
    if (!j.is_object()) {
      Fail(ptr, std::string("must be an object, not ") + j.type_name());
      return false;
    }
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      Fail(Pointer(ptr, it.key()), "unknown field (known: " + list + ")");
    }
    return true;
  }

  const json* Field(const json& obj, std::string_view ptr, std::string_view key, bool required) {
    auto it = obj.find(key);
    if (it != obj.end()) return &*it;
    if (required) Fail(Pointer(ptr, key), "is required");
    return nullptr;
  }

  std::optional<std::string> String(const json& j, std::string_view ptr) {
    if (!j.is_string()) {
      Fail(ptr, std::string("must be a string, not ") + j.type_name());
      return std::nullopt;
    }
    const auto& s = j.get_ref<const std::string&>();
    if (s.find('\0') != std::string::npos) {
      Fail(ptr, "contains a NUL byte");
      return std::nullopt;
    }
    return s;
  }
  std::optional<std::string> String(const json& obj, std::string_view ptr, std::string_view key,
                                    bool required) {
    const json* f = Field(obj, ptr, key, required);
    return f != nullptr ? String(*f, Pointer(ptr, key)) : std::nullopt;
  }

  std::optional<bool> Bool(const json& obj, std::string_view ptr, std::string_view key) {
    const json* f = Field(obj, ptr, key, false);
    if (f == nullptr) return std::nullopt;
    if (!f->is_boolean()) {
      Fail(Pointer(ptr, key), std::string("must be true or false, not ") + f->type_name());
      return std::nullopt;
    }
    return f->get<bool>();
  }

  // One of `values`, spelled as in the file.
  template <typename E>
  std::optional<E> Enum(const json& obj, std::string_view ptr, std::string_view key, bool required,
                        std::initializer_list<std::pair<std::string_view, E>> values) {
    auto s = String(obj, ptr, key, required);
    if (!s) return std::nullopt;
    std::string list;
    size_t i = 0;
    for (const auto& [name, value] : values) {
      if (*s == name) return value;
      if (i > 0) list += i + 1 == values.size() ? " or " : ", ";
      list += Quote(name);
      ++i;
    }
    Fail(Pointer(ptr, key), "must be " + list + ", not " + Quote(*s));
    return std::nullopt;
  }

  std::optional<uint64_t> Uint(const json& obj, std::string_view ptr, std::string_view key,
                               Range range) {
    const json* f = Field(obj, ptr, key, false);
    if (f == nullptr) return std::nullopt;
    const std::string p = Pointer(ptr, key);
    const std::string bounds =
        "must be an integer from " + std::to_string(range.min) + " to " + std::to_string(range.max);
    if (!f->is_number()) {
      Fail(p, bounds + ", not " + f->type_name());
    } else if (f->is_number_float() || (f->is_number_integer() && !f->is_number_unsigned())) {
      Fail(p, bounds + ", not " + f->dump());
    } else if (const uint64_t v = f->get<uint64_t>(); v < range.min || v > range.max) {
      Fail(p, bounds + ", not " + std::to_string(v));
    } else {
      return v;
    }
    return std::nullopt;
  }

  // An array of strings; bad elements are reported and skipped.
  std::vector<std::string> Strings(const json& j, std::string_view ptr) {
    std::vector<std::string> out;
    if (!j.is_array()) {
      Fail(ptr, std::string("must be an array of strings, not ") + j.type_name());
      return out;
    }
    if (j.size() > kMaxListItems) {
      Fail(ptr, "has " + std::to_string(j.size()) + " entries; at most " +
                    std::to_string(kMaxListItems) + " are allowed");
      return out;
    }
    for (size_t i = 0; i < j.size(); ++i) {
      if (auto s = String(j[i], Pointer(ptr, i))) out.push_back(std::move(*s));
    }
    return out;
  }

  // An absolute, normalised path (sandbox::CheckPathSyntax).
  bool Path(const std::string& path, std::string_view ptr) {
    auto ok = sandbox::CheckPathSyntax(path, "path");
    if (!ok) Fail(ptr, ok.error().what);
    return ok.has_value();
  }

 private:
  std::string file_;
  std::vector<std::string> errors_;
};

// nlohmann keeps the last of two equal keys silently; a policy that says "network" twice is
// ambiguous, so the parse callback records every repeated key with its pointer.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        std::string ptr = stack_.empty() ? "" : ChildPointer();
        stack_.push_back({event == json::parse_event_t::object_start, std::move(ptr), {}, {}, 0});
        break;
      }
      case json::parse_event_t::key: {
        Frame& f = stack_.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second) duplicates_.push_back(Pointer(f.pointer, f.key));
        break;
      }
      case json::parse_event_t::value:
        if (!stack_.empty() && !stack_.back().is_object) ++stack_.back().next_index;
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        stack_.pop_back();
        break;
    }
    return true;
  }
  std::vector<std::string> duplicates_;

 private:
  struct Frame {
    bool is_object;
    std::string pointer;
    std::set<std::string> keys;
    std::string key;
    size_t next_index;
  };
  std::string ChildPointer() {
    Frame& f = stack_.back();
    return f.is_object ? Pointer(f.pointer, f.key) : Pointer(f.pointer, f.next_index++);
  }
  std::vector<Frame> stack_;
};

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
      L.memory_max_bytes =
          c_.Uint(*l, "/limits", "memory_max_bytes", kMemoryMaxRange).value_or(L.memory_max_bytes);
      L.memory_swap_max_bytes = c_.Uint(*l, "/limits", "memory_swap_max_bytes", kSwapMaxRange)
                                    .value_or(L.memory_swap_max_bytes);
      L.pids_max = c_.Uint(*l, "/limits", "pids_max", kPidsMaxRange).value_or(L.pids_max);
      L.cpu_max_percent = c_.Uint(*l, "/limits", "cpu_max_percent", kCpuPercentRange);
    }
    if (const json* d = Section(root, "deadlines", {"wall_seconds", "idle_seconds"})) {
      PolicyDeadlines& D = p_.deadlines;
      D.wall_seconds =
          c_.Uint(*d, "/deadlines", "wall_seconds", kDeadlineRange).value_or(D.wall_seconds);
      D.idle_seconds =
          c_.Uint(*d, "/deadlines", "idle_seconds", kDeadlineRange).value_or(D.idle_seconds);
    }
    if (const json* o = Section(root, "output",
                                {"ring_bytes", "transcript_max_bytes", "max_rate_bytes_per_second",
                                 "max_rate_window_seconds"})) {
      PolicyOutput& O = p_.output;
      O.ring_bytes =
          c_.Uint(*o, "/output", "ring_bytes", {64 << 10, 256ull << 20}).value_or(O.ring_bytes);
      O.transcript_max_bytes = c_.Uint(*o, "/output", "transcript_max_bytes", {1 << 20, 1ull << 40})
                                   .value_or(O.transcript_max_bytes);
      O.max_rate_bytes_per_second =
          c_.Uint(*o, "/output", "max_rate_bytes_per_second", {0, 1ull << 30})
              .value_or(O.max_rate_bytes_per_second);
      O.max_rate_window_seconds = c_.Uint(*o, "/output", "max_rate_window_seconds", {1, 3600})
                                      .value_or(O.max_rate_window_seconds);
    }
  }

  // Each name may come from one source only: pass, set, secrets or optional_secrets.
  bool ClaimEnvName(const std::string& name, const std::string& ptr) {
    if (!IsEnvName(name)) {
      c_.Fail(ptr, Quote(name) +
                       " is not an environment variable name (^[A-Za-z_][A-Za-z0-9_]{0,127}$)");
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
          if (!IsEnvName(names[i])) {
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

struct FileRules {
  std::optional<uid_t> owner;     // required owner; also: group and others may not write
  bool private_to_group = false;  // also: others may not read
  bool no_symlink = false;        // the last component may not be a symlink
};

// Reads a regular file of at most `max_bytes`, checked against `rules`.
Result<std::string> ReadSmallFile(int dirfd, const std::string& path, const std::string& label,
                                  size_t max_bytes, FileRules rules) {
  const std::optional<uid_t> owner = rules.owner;
  const bool private_to_group = rules.private_to_group;
  // O_NONBLOCK: opening a FIFO planted in place of the file must not block the supervisor.
  UniqueFd fd(
      ::openat(dirfd, path.c_str(),
               O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (rules.no_symlink ? O_NOFOLLOW : 0)));
  if (!fd) return ErrnoError("open(" + label + ")");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("fstat(" + label + ")");
  if (!S_ISREG(st.st_mode)) return PlainError(label + " is not a regular file");
  if (owner && st.st_uid != *owner) {
    return PlainError(label + " belongs to uid " + std::to_string(st.st_uid) + ", not uid " +
                      std::to_string(*owner));
  }
  if (owner && (st.st_mode & (private_to_group ? 027 : 022)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return PlainError(label + " has mode " + mode +
                      (private_to_group ? ": group may not write it and others may not read it"
                                        : ": group and others may not write it"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return PlainError(label + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read(" + label + ")");
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return PlainError(label + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  return out;
}

PolicyLoad LoadFile(const std::string& path, std::optional<uid_t> owner) {
  auto text = ReadSmallFile(AT_FDCWD, path, "policy file " + Quote(path), kMaxPolicyFileBytes,
                            {owner, false, false});
  if (!text) return {nullptr, {path + ": " + text.error().ToString()}};
  return ParsePolicy(path, *text);
}

}  // namespace

std::string_view ErrorCode(const Error& error) {
  for (std::string_view code : {kPolicyViolation, kBadRequest}) {
    if (error.what.size() > code.size() && error.what.starts_with(code) &&
        error.what[code.size()] == ':') {
      return code;
    }
  }
  return "internal";
}

std::string_view ToString(SessionType type) {
  switch (type) {
    case SessionType::kExec:
      return "exec";
    case SessionType::kPrint:
      return "print";
    case SessionType::kInteractive:
      return "interactive";
  }
  return "?";
}

std::vector<std::string> Policy::HiddenPaths() const {
  std::vector<std::string> out(kAlwaysHiddenPaths.begin(), kAlwaysHiddenPaths.end());
  out.insert(out.end(), hide.begin(), hide.end());
  return out;
}

PolicyLoad ParsePolicy(std::string_view file, std::string_view text) {
  Checker c{std::string(file)};
  auto policy = std::make_shared<Policy>();
  policy->file = std::string(file);
  const std::optional<std::string> name = PolicyNameOf(file);
  if (!name) {
    c.Fail("", "a policy file is named NAME.json");
  } else if (!IsPolicyName(*name)) {
    c.Fail("", "policy name " + Quote(*name) + " must match ^[a-z0-9][a-z0-9-]{0,63}$");
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

PolicyLoad LoadPolicyFile(const std::string& path, PolicyLoadOptions options) {
  return LoadFile(path, options.require_root_owned ? std::optional<uid_t>(0) : std::nullopt);
}

Result<PolicySet> PolicySet::Load(const std::string& dir, PolicyLoadOptions options) {
  PolicySet set;
  set.dir_ = dir;
  set.options_ = options;
  std::vector<std::string> errors;
  const std::optional<uid_t> owner =
      options.require_root_owned ? std::optional<uid_t>(0) : std::nullopt;

  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return ErrnoError("open(policy directory " + Quote(dir) + ")");
  struct stat st {};
  if (::fstat(dfd.get(), &st) != 0) return ErrnoError("fstat(policy directory " + Quote(dir) + ")");
  if (owner && (st.st_uid != *owner || (st.st_mode & 022) != 0)) {
    errors.push_back(dir +
                     ": the policy directory must belong to root and not be writable by "
                     "group or others");
  }
  DIR* d = ::fdopendir(dfd.Release());
  if (d == nullptr) return ErrnoError("fdopendir(policy directory " + Quote(dir) + ")");
  std::vector<std::string> names;
  errno = 0;
  while (const struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (!n.starts_with('.') && n.ends_with(".json")) names.push_back(n);
  }
  const int readdir_errno = errno;
  ::closedir(d);
  if (readdir_errno != 0) return ErrnoError(readdir_errno, "readdir(" + Quote(dir) + ")");
  std::sort(names.begin(), names.end());

  for (const auto& n : names) {
    PolicyLoad load = LoadFile(dir + "/" + n, owner);
    errors.insert(errors.end(), load.errors.begin(), load.errors.end());
    if (load.policy) set.policies_.emplace(load.policy->name, std::move(load.policy));
  }
  if (errors.empty()) {
    auto exec = set.policies_.find("exec");
    if (exec == set.policies_.end()) {
      errors.push_back(dir + ": no exec.json (the policy of exec sessions without a preset)");
    } else if (exec->second->type != SessionType::kExec) {
      errors.push_back(exec->second->file + ":/type: the exec policy must have type \"exec\"");
    }
  }
  if (!errors.empty()) {
    std::string what;
    for (const auto& e : errors) what += (what.empty() ? "" : "\n") + e;
    return PlainError(std::move(what));
  }
  return set;
}

std::shared_ptr<const Policy> PolicySet::Find(std::string_view name) const {
  auto it = policies_.find(name);
  return it == policies_.end() ? nullptr : it->second;
}

Result<EffectivePolicy> Tighten(const Policy& policy, const RequestedLimits& requested) {
  EffectivePolicy e{policy};
  // `zero_is_none`: 0 means "no limit", the loosest value there is.
  auto lower = [&](std::string_view field, const std::optional<uint64_t>& want,
                   std::optional<uint64_t> have, Range range, bool zero_is_none,
                   auto assign) -> Result<void> {
    if (!want) return Ok();
    if ((*want < range.min && !(zero_is_none && *want == 0)) || *want > range.max) {
      return Coded(kBadRequest, std::string(field) + ": requested " + std::to_string(*want) +
                                    " is outside " + std::to_string(range.min) + ".." +
                                    std::to_string(range.max));
    }
    const bool have_none = !have || (zero_is_none && *have == 0);
    const bool want_none = zero_is_none && *want == 0;
    if (!have_none && (want_none || *want > *have)) {
      return Coded(kPolicyViolation,
                   std::string(field) + ": requested " +
                       (want_none ? std::string("0 (none)") : std::to_string(*want)) +
                       " exceeds the policy's " + std::to_string(*have) + " (policy " +
                       Quote(policy.name) + "); a request may only lower a limit");
    }
    assign(*want);
    return Ok();
  };
  PolicyLimits& l = e.policy.limits;
  PolicyDeadlines& d = e.policy.deadlines;
  MP_RETURN_IF_ERROR(lower("limits.memory_max_bytes", requested.memory_max_bytes,
                           l.memory_max_bytes, kMemoryMaxRange, false,
                           [&](uint64_t v) { l.memory_max_bytes = v; }));
  MP_RETURN_IF_ERROR(lower("limits.memory_swap_max_bytes", requested.memory_swap_max_bytes,
                           l.memory_swap_max_bytes, kSwapMaxRange, false,
                           [&](uint64_t v) { l.memory_swap_max_bytes = v; }));
  MP_RETURN_IF_ERROR(lower("limits.pids_max", requested.pids_max, l.pids_max, kPidsMaxRange, false,
                           [&](uint64_t v) { l.pids_max = v; }));
  MP_RETURN_IF_ERROR(lower("limits.cpu_max_percent", requested.cpu_max_percent, l.cpu_max_percent,
                           kCpuPercentRange, false, [&](uint64_t v) { l.cpu_max_percent = v; }));
  MP_RETURN_IF_ERROR(lower("deadlines.wall_seconds", requested.wall_seconds, d.wall_seconds,
                           kDeadlineRange, true, [&](uint64_t v) { d.wall_seconds = v; }));
  MP_RETURN_IF_ERROR(lower("deadlines.idle_seconds", requested.idle_seconds, d.idle_seconds,
                           kDeadlineRange, true, [&](uint64_t v) { d.idle_seconds = v; }));
  return e;
}

Result<std::string> ResolveWorkspace(const Policy& policy, const std::string& cwd) {
  const std::string& want = cwd.empty() ? policy.default_workspace : cwd;
  if (want.empty()) {
    return Coded(kBadRequest,
                 "cwd: none given and policy " + Quote(policy.name) + " has no default_workspace");
  }
  if (want.front() != '/' || want.find('\0') != std::string::npos || want.size() >= PATH_MAX) {
    return Coded(kBadRequest, "cwd " + Quote(want) + " is not an absolute path");
  }
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(want.c_str(), nullptr), &std::free);
  if (!real) return Coded(kBadRequest, "cwd " + Quote(want) + ": realpath", errno);
  const std::string resolved = real.get();
  struct stat st {};
  if (::stat(resolved.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Coded(kBadRequest, "cwd " + Quote(want) + " is not a directory");
  }
  const bool inside =
      std::any_of(policy.workspace_roots.begin(), policy.workspace_roots.end(),
                  [&](const std::string& r) { return sandbox::PathIsWithin(resolved, r); });
  if (!inside) {
    return Coded(kPolicyViolation, "cwd " + Quote(want) + " resolves to " + Quote(resolved) +
                                       ", outside the workspace roots of policy " +
                                       Quote(policy.name) + " (" +
                                       JoinQuoted(policy.workspace_roots) + ")");
  }
  for (const auto& h : policy.HiddenPaths()) {
    if (sandbox::PathIsWithin(resolved, h)) {
      return Coded(kPolicyViolation, "cwd " + Quote(want) + " resolves to " + Quote(resolved) +
                                         ", inside the hidden path " + Quote(h));
    }
  }
  return resolved;
}

SpawnHost SystemSpawnHost() {
  SpawnHost host;
  host.lookup_user = [](const std::string& user) -> std::optional<UserIds> {
    struct passwd pw {};
    struct passwd* out = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &out) != 0 || out == nullptr) {
      return std::nullopt;
    }
    return UserIds{pw.pw_uid, pw.pw_gid};
  };
  host.lookup_group = [](const std::string& group) -> std::optional<gid_t> {
    struct group gr {};
    struct group* out = nullptr;
    std::vector<char> buf(65536);
    if (::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &out) != 0 || out == nullptr) {
      return std::nullopt;
    }
    return gr.gr_gid;
  };
  host.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v != nullptr ? std::optional<std::string>(v) : std::nullopt;
  };
  return host;
}

Result<sandbox::SpawnRequest> BuildSpawnRequest(const EffectivePolicy& effective,
                                                const SessionLaunch& launch,
                                                const SpawnHost& host) {
  const Policy& p = effective.policy;
  const std::string where = "policy " + Quote(p.name);
  sandbox::SpawnRequest r;

  if (launch.task.empty()) return Coded(kBadRequest, "task: is empty");
  if (launch.task.find('\0') != std::string::npos) {
    return Coded(kBadRequest, "task: contains a NUL byte");
  }
  if (launch.task.size() > kMaxTaskBytes) {
    return Coded(kBadRequest, "task: " + std::to_string(launch.task.size()) +
                                  " bytes; one argument may hold at most " +
                                  std::to_string(kMaxTaskBytes));
  }
  if (launch.command) {
    if (!p.command.empty()) {
      return Coded(kPolicyViolation, "command: " + where +
                                         " fixes the command; a request may not "
                                         "give one");
    }
    if (launch.command->empty() || launch.command->front().empty()) {
      return Coded(kBadRequest, "command: is empty");
    }
    for (const auto& a : *launch.command) {
      if (a.find('\0') != std::string::npos) return Coded(kBadRequest, "command: contains a NUL");
    }
    r.argv = *launch.command;
  } else if (!p.command.empty()) {
    r.argv = p.command;
  } else {
    r.argv = {"/bin/sh", "-lc"};
  }
  r.argv.push_back(launch.task);

  for (const auto& [name, value] : launch.env) {
    if (std::find(p.request_env_allow.begin(), p.request_env_allow.end(), name) ==
        p.request_env_allow.end()) {
      return Coded(kPolicyViolation, "env." + name + ": not in request_env.allow of " + where);
    }
    if (value.find('\0') != std::string::npos || value.size() > kMaxEnvValueBytes) {
      return Coded(kBadRequest, "env." + name + ": contains a NUL byte or is longer than " +
                                    std::to_string(kMaxEnvValueBytes) + " bytes");
    }
  }
  MP_TRY(r.workspace, ResolveWorkspace(p, launch.cwd));

  std::map<std::string, std::string> env;
  for (const auto& name : p.env.pass) {
    if (auto v = host.getenv ? host.getenv(name) : std::nullopt) env[name] = *v;
  }
  for (const auto& [name, value] : p.env.set) env[name] = value;
  if (!p.env.secrets.empty() || !p.env.optional_secrets.empty()) {
    const std::string dir_label = "credentials directory " + Quote(host.credentials_dir);
    UniqueFd dir(::open(host.credentials_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return ErrnoError("open(" + dir_label + ")").Wrap(where);
    struct stat st {};
    if (::fstat(dir.get(), &st) != 0) return ErrnoError("fstat(" + dir_label + ")").Wrap(where);
    if (st.st_uid != host.credentials_owner || (st.st_mode & 022) != 0) {
      return PlainError(dir_label + " must belong to uid " +
                        std::to_string(host.credentials_owner) +
                        " and not be writable by group or others")
          .Wrap(where);
    }
    for (const bool optional : {false, true}) {
      const auto& secrets = optional ? p.env.optional_secrets : p.env.secrets;
      const std::string field = optional ? ", env.optional_secrets." : ", env.secrets.";
      for (const auto& [name, credential] : secrets) {
        auto value = ReadSmallFile(dir.get(), credential, "credential " + Quote(credential),
                                   kMaxSecretBytes, {host.credentials_owner, true, true});
        // Only absence is optional: a file that exists must pass every check.
        if (!value && optional && value.error().errnum == ENOENT) continue;
        if (!value) return std::move(value).error().Wrap(where + field + name);
        // Files written with echo or an editor end in a newline that is not part of the secret.
        if (value->ends_with('\n')) value->pop_back();
        // An empty file holds no key: an optional one is as if absent (the agent falls back to
        // the login in its state dir, which an empty variable could mask); a required one is
        // a mistake to report.
        if (value->empty()) {
          if (optional) continue;
          return PlainError("credential " + Quote(credential) + " is empty")
              .Wrap(where + field + name);
        }
        if (value->find('\0') != std::string::npos) {
          return PlainError("credential " + Quote(credential) + " contains a NUL byte")
              .Wrap(where + field + name);
        }
        env[name] = std::move(*value);
      }
    }
  }
  for (const auto& [name, value] : launch.env) env[name] = value;
  for (const auto& [name, value] : env) r.env.push_back(name + "=" + value);
  if (auto path = env.find("PATH"); path != env.end()) r.search_path = path->second;

  if (!host.lookup_user) return PlainError("no user lookup").Wrap(where);
  const std::optional<UserIds> ids = host.lookup_user(p.run_as.user);
  if (!ids) return PlainError("run_as.user " + Quote(p.run_as.user) + ": no such user").Wrap(where);
  r.uid = ids->uid;
  r.gid = ids->gid;
  if (!p.run_as.group.empty()) {
    const std::optional<gid_t> gid =
        host.lookup_group ? host.lookup_group(p.run_as.group) : std::nullopt;
    if (!gid) {
      return PlainError("run_as.group " + Quote(p.run_as.group) + ": no such group").Wrap(where);
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
  for (const auto& s : p.state_dirs) r.binds.push_back({s, s, sandbox::BindMode::kReadWrite});
  r.binds.push_back({r.workspace, r.workspace, sandbox::BindMode::kReadWrite});
  r.hide = p.HiddenPaths();
  // The other sessions' workspaces: each root is covered by an empty directory,
  // and only this session's workspace is bound back in (the sandbox places
  // binds after hides).
  for (const auto& root : p.workspace_roots) {
    if (::access(root.c_str(), F_OK) == 0) r.hide.push_back(root);
  }
  r.network = p.network;

  r.limits.memory_max_bytes = p.limits.memory_max_bytes;
  r.limits.memory_swap_max_bytes = p.limits.memory_swap_max_bytes;
  r.limits.pids_max = p.limits.pids_max;
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

}  // namespace mp::supervisor
