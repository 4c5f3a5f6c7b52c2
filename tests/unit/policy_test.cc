// The policy model: loader (table tests on exact `FILE:POINTER: reason` texts), PolicySet
// load/reload, Tighten, ResolveWorkspace on a real directory tree with symlinks, and
// BuildSpawnRequest with a fake user database, environment and credentials directory.
// Runs as any user; touches only its own temporary directories.
#include "supervisor/policy.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "sandbox/syscall_groups.h"

namespace mp::supervisor {
namespace {

constexpr char kFile[] = "/p/t.json";

// A valid exec policy; `extra` is spliced in as further top-level fields.
std::string Doc(const std::string& extra = "", const std::string& type = "exec") {
  return R"({"description": "d", "type": ")" + type +
         R"(", "run_as": {"user": "nobody"}, "workspace_roots": ["/srv/ws"])" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

std::vector<std::string> Errors(const std::string& text, const std::string& file = kFile) {
  return ParsePolicy(file, text).errors;
}

std::shared_ptr<const Policy> MustParse(const std::string& text, const std::string& file = kFile) {
  PolicyLoad load = ParsePolicy(file, text);
  EXPECT_TRUE(load.errors.empty()) << ::testing::PrintToString(load.errors);
  return load.policy;
}

std::string E(const std::string& pointer_and_reason) {
  return std::string(kFile) + ":" + pointer_and_reason;
}

// Not under /tmp: the loader refuses workspace roots and mounts there (the sandbox's private
// /tmp would cover them). MP_TEST_SCRATCH overrides /var/tmp.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("MP_TEST_SCRATCH");
    std::string tmpl = std::string(base != nullptr ? base : "/var/tmp") + "/mp-policy-test-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr) << tmpl;
    char* real = ::realpath(tmpl.c_str(), nullptr);  // the tests compare resolved paths
    path_ = real != nullptr ? real : tmpl;
    std::free(real);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Mkdir(const std::string& rel, mode_t mode = 0755) const {
    const std::string p = path_ + "/" + rel;
    EXPECT_EQ(::mkdir(p.c_str(), mode), 0) << p;
    return p;
  }
  std::string Write(const std::string& rel, const std::string& text, mode_t mode = 0644) const {
    const std::string p = path_ + "/" + rel;
    std::ofstream(p) << text;
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    return p;
  }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------
// Loader

TEST(PolicyLoaderTest, MinimalPolicyGetsDocumentedDefaults) {
  auto p = MustParse(Doc());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->name, "t");
  EXPECT_EQ(p->file, kFile);
  EXPECT_EQ(p->type, SessionType::kExec);
  EXPECT_TRUE(p->command.empty());
  EXPECT_FALSE(p->bypasses_agent_permissions);
  EXPECT_EQ(p->run_as.user, "nobody");
  EXPECT_EQ(p->run_as.group, "");
  EXPECT_FALSE(p->run_as.allow_root);
  EXPECT_EQ(p->network, sandbox::NetworkMode::kNone);
  EXPECT_TRUE(p->home.dir.empty());
  EXPECT_EQ(p->home.keep, HomeKeep::kSession);
  EXPECT_EQ(p->home.max_bytes, 1ull << 30);
  EXPECT_EQ(p->limits.memory_max_bytes, 2ull << 30);
  EXPECT_EQ(p->limits.memory_swap_max_bytes, 0u);
  EXPECT_EQ(p->limits.pids_max, 512u);
  EXPECT_FALSE(p->limits.cpu_max_percent.has_value());
  EXPECT_EQ(p->deadlines.wall_seconds, 3600u);
  EXPECT_EQ(p->deadlines.idle_seconds, 900u);
  EXPECT_EQ(p->output.ring_bytes, 1u << 20);
  EXPECT_EQ(p->output.transcript_max_bytes, 64u << 20);
  EXPECT_EQ(p->output.max_rate_bytes_per_second, 1u << 20);
  EXPECT_EQ(p->output.max_rate_window_seconds, 10u);
  EXPECT_EQ(p->output.on_flood, common::FloodAction::kThrottle);
  EXPECT_FALSE(p->rlimits.core_bytes || p->rlimits.nofile || p->rlimits.nproc ||
               p->rlimits.fsize_bytes || p->rlimits.stack_bytes || p->rlimits.as_bytes ||
               p->rlimits.cpu_seconds);
  const sandbox::SeccompProfile def = sandbox::DefaultDenyProfile();
  EXPECT_EQ(p->seccomp.deny, def.deny);
  EXPECT_TRUE(p->seccomp.kill.empty());
  EXPECT_FALSE(p->seccomp.allow_new_namespaces);
  EXPECT_FALSE(p->seccomp.allow_user_namespaces);
  EXPECT_TRUE(p->seccomp.deny_tty_injection);
  ASSERT_NE(p->seccomp_program, nullptr);
  EXPECT_GT(p->seccomp_program->instructions().size(), 0u);
  EXPECT_EQ(p->HiddenPaths(),
            (std::vector<std::string>{"/etc/monkeyproof", "/var/lib/monkeyproof/state",
                                      "/run/monkeyproof", "/run/credentials"}));
}

TEST(PolicyLoaderTest, CommentsAndEveryFieldAccepted) {
  const std::string text = R"(
  // line comment
  {
    /* block
       comment */
    "description": "agent",
    "type": "interactive",
    "command": ["/usr/local/bin/claude", "--permission-mode", "bypassPermissions"],
    "bypasses_agent_permissions": true,
    "run_as": {"user": "mp-agent", "group": "mp-agents"},
    "workspace_roots": ["/srv/ws", "/var/lib/monkeyproof/workspaces"],
    "default_workspace": "/srv/ws/default",
    "mounts": [{"source": "/opt/tools", "mode": "ro"},
               {"source": "/srv/cache", "target": "/cache", "mode": "rw"}],
    "state_dirs": ["/var/lib/mp-agent/.claude"],
    "home": {"dir": "/var/lib/mp-agent/.claude", "keep": "shared", "max_bytes": 2097152},
    "hide": ["/home", "/root"],
    "network": "host",
    "seccomp": {"deny": ["@namespaces", "acct"], "kill": ["ptrace"],
                "allow_new_namespaces": true, "allow_user_namespaces": true,
                "deny_tty_injection": false},
    "rlimits": {"core_bytes": 0, "cpu_seconds": 7200, "fsize_bytes": 1073741824,
                "nofile": 8192, "nproc": 1024, "stack_bytes": 16777216, "as_bytes": 17179869184},
    "limits": {"memory_max_bytes": 4294967296, "memory_swap_max_bytes": 0, "pids_max": 1024,
               "cpu_max_percent": 250},
    "deadlines": {"wall_seconds": 7200, "idle_seconds": 0},
    "output": {"ring_bytes": 2097152, "transcript_max_bytes": 134217728,
               "max_rate_bytes_per_second": 0, "max_rate_window_seconds": 30,
               "on_flood": "kill"},
    "env": {"pass": ["TZ"], "set": {"HOME": "/var/lib/mp-agent", "TERM": "xterm-256color"},
            "secrets": {"ANTHROPIC_API_KEY": "anthropic-api-key"}},
    "request_env": {"allow": ["TERM", "LANG"]}, // trailing comment
  }
  )";
  // Trailing commas are not JSON: nlohmann refuses them even with comments on.
  EXPECT_EQ(Errors(text, "/p/claude-interactive.json").size(), 1u);
  std::string fixed = text;
  fixed.replace(fixed.find("}, // trailing"), 3, "}  ");
  auto p = MustParse(fixed, "/p/claude-interactive.json");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->name, "claude-interactive");
  EXPECT_EQ(p->type, SessionType::kInteractive);
  EXPECT_EQ(p->command.back(), "bypassPermissions");
  EXPECT_TRUE(p->bypasses_agent_permissions);
  EXPECT_EQ(p->run_as.group, "mp-agents");
  EXPECT_EQ(p->default_workspace, "/srv/ws/default");
  ASSERT_EQ(p->mounts.size(), 2u);
  EXPECT_EQ(p->mounts[0].target, "/opt/tools");  // target defaults to source
  EXPECT_EQ(p->mounts[0].mode, sandbox::BindMode::kReadOnly);
  EXPECT_EQ(p->mounts[1].target, "/cache");
  EXPECT_EQ(p->mounts[1].mode, sandbox::BindMode::kReadWrite);
  EXPECT_EQ(p->network, sandbox::NetworkMode::kHost);
  EXPECT_EQ(p->home.dir, "/var/lib/mp-agent/.claude");
  EXPECT_EQ(p->home.keep, HomeKeep::kShared);
  EXPECT_EQ(p->home.max_bytes, 2097152u);
  std::vector<std::string> deny = sandbox::DefaultDenyProfile().deny;
  deny.push_back("@namespaces");
  deny.push_back("acct");
  EXPECT_EQ(p->seccomp.deny, deny);  // appended to the default, never replacing it
  EXPECT_EQ(p->seccomp.kill, std::vector<std::string>{"ptrace"});
  EXPECT_TRUE(p->seccomp.allow_user_namespaces);
  EXPECT_FALSE(p->seccomp.deny_tty_injection);
  EXPECT_EQ(p->rlimits.nofile, 8192u);
  EXPECT_EQ(p->rlimits.as_bytes, 17179869184u);
  EXPECT_EQ(p->limits.cpu_max_percent, 250u);
  EXPECT_EQ(p->deadlines.idle_seconds, 0u);
  EXPECT_EQ(p->output.max_rate_bytes_per_second, 0u);
  EXPECT_EQ(p->output.on_flood, common::FloodAction::kKill);
  EXPECT_EQ(p->env.secrets.at("ANTHROPIC_API_KEY"), "anthropic-api-key");
  EXPECT_EQ(p->request_env_allow, (std::vector<std::string>{"TERM", "LANG"}));
  EXPECT_EQ(p->HiddenPaths().size(), 6u);
}

struct BadCase {
  const char* label;
  std::string text;
  std::vector<std::string> errors;
};

TEST(PolicyLoaderTest, EachBadInputGetsItsExactError) {
  const BadCase cases[] = {
      {"not an object", "[]", {std::string(kFile) + ": expected object, got array"}},
      {"syntax error",
       "{\"type\": }",
       {std::string(kFile) + ": JSON: parse error at line 1, column 10: syntax error while parsing "
                             "value - unexpected '}'; "
                             "expected '[', '{', or a literal"}},
      {"unterminated comment",
       "{} /* x",
       {std::string(kFile) + ": JSON: parse error at line 1, column 8: syntax error while parsing "
                             "value - invalid comment; "
                             "missing closing '*/'; last read: '{} /* x'; expected end of input"}},
      {"unknown top-level field",
       Doc(R"("networking": "none")"),
       {E("/networking: unknown field (known: description, type, command, "
          "own_command_types, bypasses_agent_permissions, run_as, workspace_owner, hide, "
          "workspace_roots, "
          "default_workspace, mounts, "
          "state_dirs, home, network, seccomp, rlimits, limits, deadlines, output, env, "
          "request_env)")}},
      {"unknown nested field",
       Doc(R"("limits": {"memory_max": 1})"),
       {E("/limits/memory_max: unknown field (known: memory_max_bytes, memory_swap_max_bytes, "
          "pids_max, pty_max, cpu_max_percent)")}},
      {"field given twice",
       Doc(R"("network": "host", "network": "none")"),
       {std::string(kFile) + ": JSON: duplicate key \"network\""}},
      {"nested field given twice",
       Doc(R"("limits": {"pids_max": 64, "pids_max": 128})"),
       {std::string(kFile) + ": JSON: duplicate key \"pids_max\" in /limits"}},
      {"wrong type",
       R"({"description": "d", "type": 1, "run_as": {"user": "nobody"},
                        "workspace_roots": ["/srv/ws"]})",
       {E("/type: expected string, got unsigned integer")}},
      {"missing required fields",
       "{}",
       {E("/description: required field is missing"), E("/type: required field is missing"),
        E("/run_as: required field is missing"), E("/workspace_roots: required field is missing")}},
      {"bad type",
       Doc("", "shell"),
       {E("/type: expected one of \"exec\", \"print\", \"interactive\"; got \"shell\"")}},
      {"network is an enum",
       Doc(R"("network": true)"),
       {E("/network: expected string, got boolean")}},
      {"network value",
       Doc(R"("network": "bridge")"),
       {E("/network: expected one of \"none\", \"host\", \"allowlist\"; got \"bridge\"")}},
      {"on_flood value",
       Doc(R"("output": {"on_flood": "drop"})"),
       {E("/output/on_flood: expected one of \"throttle\", \"kill\"; got \"drop\"")}},
      {"on_flood is a string",
       Doc(R"("output": {"on_flood": false})"),
       {E("/output/on_flood: expected string, got boolean")}},
      {"root refused",
       R"({"description": "d", "type": "exec", "run_as": {"user": "root"},
                         "workspace_roots": ["/srv/ws"]})",
       {E("/run_as/user: \"root\" is refused unless run_as.allow_root is true")}},
      {"root group refused",
       R"({"description": "d", "type": "exec", "run_as": {"user": "nobody", "group": "root"},
          "workspace_roots": ["/srv/ws"]})",
       {E("/run_as/group: \"root\" is refused unless run_as.allow_root is true")}},
      {"bad user name",
       R"({"description": "d", "type": "exec", "run_as": {"user": "no body"},
          "workspace_roots": ["/srv/ws"]})",
       {E("/run_as/user: \"no body\" is not a user or group name (^[a-z_][a-z0-9_.-]{0,31}$)")}},
      {"print needs command and the bypass flag",
       Doc("", "print"),
       {E("/command: is required for print and interactive policies (the template the task is "
          "appended to)"),
        E("/bypasses_agent_permissions: is required for print and interactive policies")}},
      {"relative command path",
       Doc(R"("command": ["bin/tool"])"),
       {E("/command/0: path \"bin/tool\" is not an absolute path")}},
      {"bad seccomp group",
       Doc(R"("seccomp": {"deny": ["@mount", "@mout"]})"),
       {E("/seccomp/deny/1: unknown syscall group \"@mout\"")}},
      {"bad syscall name",
       Doc(R"("seccomp": {"kill": ["mout"]})"),
       {E("/seccomp/kill/0: unknown syscall \"mout\"")}},
      {"@default cannot be denied",
       Doc(R"("seccomp": {"deny": ["@default"]})"),
       {E("/seccomp/deny/0: \"@default\" is what every program needs; it cannot be denied")}},
      {"user namespaces need new namespaces",
       Doc(R"("seccomp": {"allow_user_namespaces": true})"),
       {E("/seccomp/allow_user_namespaces: has no effect unless allow_new_namespaces is true")}},
      {"relative path",
       R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
          "workspace_roots": ["srv/ws"]})",
       {E("/workspace_roots/0: path \"srv/ws\" is not an absolute path")}},
      {"dot-dot path",
       R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
          "workspace_roots": ["/srv/ws/../etc"]})",
       {E("/workspace_roots/0: path \"/srv/ws/../etc\" contains a '..' component")}},
      {"trailing slash",
       Doc(R"("hide": ["/home/"])"),
       {E("/hide/0: path \"/home/\" ends with '/'")}},
      {"empty workspace roots",
       R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
          "workspace_roots": []})",
       {E("/workspace_roots: needs at least one root")}},
      {"workspace root /",
       R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
          "workspace_roots": ["/"]})",
       {E("/workspace_roots/0: \"/\" is reserved: the sandbox mounts its own /, /proc, /dev "
          "and /tmp over it")}},
      {"workspace root in /tmp",
       R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
          "workspace_roots": ["/tmp/ws"]})",
       {E("/workspace_roots/0: \"/tmp/ws\" is reserved: the sandbox mounts its own /, /proc, "
          "/dev and /tmp over it")}},
      {"workspace root under an always-hidden path",
       R"({"description": "d", "type": "exec", "run_as": {"user": "nobody"},
          "workspace_roots": ["/etc/monkeyproof/ws"]})",
       {E("/workspace_roots/0: \"/etc/monkeyproof/ws\" lies inside the hidden path "
          "\"/etc/monkeyproof\", which is mounted over it")}},
      {"default workspace outside the roots",
       Doc(R"("default_workspace": "/srv/other")"),
       {E("/default_workspace: \"/srv/other\" lies outside workspace_roots")}},
      {"default workspace that is a root",
       Doc(R"("default_workspace": "/srv/ws")"),
       {E("/default_workspace: \"/srv/ws\" is a workspace root; make it a directory below one, "
          "e.g. \"/srv/ws/default\"")}},
      {"duplicate mount targets",
       Doc(R"("mounts": [{"source": "/opt/a", "target": "/opt/x"},
                         {"source": "/opt/b", "target": "/opt/x"}],
              "state_dirs": ["/opt/a"])"),
       {E("/mounts/1/target: target \"/opt/x\" is used by another mount or state dir")}},
      {"state dir on a mount target",
       Doc(R"("mounts": [{"source": "/opt/a"}], "state_dirs": ["/opt/a"])"),
       {E("/state_dirs/0: target \"/opt/a\" is used by another mount or state dir")}},
      {"home outside state_dirs",
       Doc(R"("state_dirs": ["/opt/a"], "home": {"dir": "/opt/b"})"),
       {E("/home/dir: \"/opt/b\" is not one of state_dirs; list it there too (the home is "
          "seeded from that state dir)")}},
      {"home without dir, bad keep, too small",
       Doc(R"("state_dirs": ["/opt/a"], "home": {"keep": "forever", "max_bytes": 4096})"),
       {E("/home/dir: required field is missing"),
        E("/home/keep: expected one of \"session\", \"shared\"; got \"forever\""),
        E("/home/max_bytes: value 4096 is out of range [1048576, 68719476736]")}},
      {"bad mount mode",
       Doc(R"("mounts": [{"source": "/opt/a", "mode": "w"}])"),
       {E("/mounts/0/mode: expected one of \"ro\", \"rw\"; got \"w\"")}},
      {"mount without source",
       Doc(R"("mounts": [{"target": "/opt/a"}])"),
       {E("/mounts/0/source: required field is missing")}},
      {"mount target in /dev",
       Doc(R"("mounts": [{"source": "/opt/a", "target": "/dev/a"}])"),
       {E("/mounts/0/target: \"/dev/a\" is reserved: the sandbox mounts its own /, /proc, /dev "
          "and /tmp over it")}},
      {"mount source in /proc",
       Doc(R"("mounts": [{"source": "/proc/1", "target": "/opt/p"}])"),
       {E("/mounts/0/source: \"/proc/1\" lies in /proc, /dev or /tmp of the host")}},
      {"mount uncovering a hidden path",
       Doc(R"("mounts": [{"source": "/etc/monkeyproof/credentials", "target": "/creds"}])"),
       {E("/mounts/0/source: \"/etc/monkeyproof/credentials\" lies inside the hidden path "
          "\"/etc/monkeyproof\"")}},
      {"mount of a tree holding a hidden path elsewhere",
       Doc(R"("mounts": [{"source": "/etc", "target": "/host-etc"}])"),
       {E("/mounts/0/target: the source \"/etc\" contains the hidden path \"/etc/monkeyproof\", "
          "so it may only be mounted at its own path")}},
      {"mount target inside a workspace root",
       Doc(R"("mounts": [{"source": "/opt/a", "target": "/srv/ws/a"}])"),
       {E("/mounts/0/target: target \"/srv/ws/a\" lies inside the workspace root \"/srv/ws\", "
          "where the session's workspace is bound over it")}},
      {"state dir under a policy-hidden path",
       Doc(R"("hide": ["/var"], "state_dirs": ["/var/x"])"),
       {E("/state_dirs/0: \"/var/x\" lies inside the hidden path \"/var\", which is mounted "
          "over it")}},
      {"hide /", Doc(R"("hide": ["/"])"), {E("/hide/0: hiding \"/\" would hide everything")}},
      {"hide / after a bad entry",
       Doc(R"("hide": ["home", "/", "/home", "/home"])"),
       {E("/hide/0: path \"home\" is not an absolute path"),
        E("/hide/1: hiding \"/\" would hide everything"), E("/hide/3: \"/home\" is listed twice")}},
      {"out of range",
       Doc(R"("limits": {"pids_max": 0})"),
       {E("/limits/pids_max: value 0 is out of range [8, 4194304]")}},
      {"negative",
       Doc(R"("limits": {"pids_max": -5})"),
       {E("/limits/pids_max: expected unsigned integer, got negative integer")}},
      {"not an integer",
       Doc(R"("limits": {"pids_max": 1.5})"),
       {E("/limits/pids_max: expected unsigned integer, got number")}},
      {"string number",
       Doc(R"("limits": {"pids_max": "512"})"),
       {E("/limits/pids_max: expected unsigned integer, got string")}},
      {"beyond uint64",
       Doc(R"("rlimits": {"core_bytes": 18446744073709551616})"),
       {E("/rlimits/core_bytes: expected unsigned integer, got number")}},
      {"memory below minimum",
       Doc(R"("limits": {"memory_max_bytes": 1024})"),
       {E("/limits/memory_max_bytes: value 1024 is out of range [16777216, "
          "1152921504606846976]")}},
      {"deadline too long",
       Doc(R"("deadlines": {"wall_seconds": 99999999})"),
       {E("/deadlines/wall_seconds: value 99999999 is out of range [0, 2592000]")}},
      {"env name",
       Doc(R"("env": {"pass": ["BAD-NAME"]})"),
       {E("/env/pass/0: \"BAD-NAME\" is not an environment variable name "
          "(^[A-Za-z_][A-Za-z0-9_]{0,255}$)")}},
      {"env name from two sources",
       Doc(R"("env": {"pass": ["HOME"], "set": {"HOME": "/x"}})"),
       {E("/env/set/HOME: \"HOME\" is already given by env.pass, env.set, env.secrets, "
          "env.optional_secrets or network.gateway")}},
      {"env name as a secret and an optional secret",
       Doc(R"("env": {"secrets": {"KEY": "a"}, "optional_secrets": {"KEY": "b"}})"),
       {E("/env/optional_secrets/KEY: \"KEY\" is already given by env.pass, env.set, "
          "env.secrets, env.optional_secrets or network.gateway")}},
      {"optional secret is a path",
       Doc(R"("env": {"optional_secrets": {"TOKEN": "a/b"}})"),
       {E("/env/optional_secrets/TOKEN: \"a/b\" is not a plain file name "
          "(^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$)")}},
      {"env set value type",
       Doc(R"("env": {"set": {"N": 1}})"),
       {E("/env/set/N: expected string, got unsigned integer")}},
      {"secret is a path",
       Doc(R"("env": {"secrets": {"TOKEN": "../token"}})"),
       {E("/env/secrets/TOKEN: \"../token\" is not a plain file name "
          "(^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$)")}},
      {"secret is a dot file",
       Doc(R"("env": {"secrets": {"TOKEN": ".."}})"),
       {E("/env/secrets/TOKEN: \"..\" is not a plain file name "
          "(^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$)")}},
      {"request may not set a secret",
       Doc(R"("env": {"secrets": {"TOKEN": "t"}}, "request_env": {"allow": ["TOKEN"]})"),
       {E("/request_env/allow/0: \"TOKEN\" is a secret (env.secrets or env.optional_secrets); "
          "a request may not set it")}},
      {"request may not set an optional secret",
       Doc(R"("env": {"optional_secrets": {"TOKEN": "t"}}, "request_env": {"allow": ["TOKEN"]})"),
       {E("/request_env/allow/0: \"TOKEN\" is a secret (env.secrets or env.optional_secrets); "
          "a request may not set it")}},
      {"NUL in a string",
       Doc(R"("env": {"set": {"A": "x\u0000y"}})"),
       {E("/env/set/A: contains a NUL byte")}},
      {"pointer escaping",
       Doc(R"("limits": {"a/b~c": 1})"),
       {E("/limits/a~1b~0c: unknown field (known: memory_max_bytes, memory_swap_max_bytes, "
          "pids_max, pty_max, cpu_max_percent)")}},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(Errors(c.text), c.errors);
    EXPECT_EQ(ParsePolicy(kFile, c.text).policy, nullptr);
  }
}

TEST(PolicyLoaderTest, CollectsEveryErrorAtOnce) {
  const std::string text = R"({
    "description": "d", "type": "interactive", "colour": "blue",
    "run_as": {"user": "root", "shell": "/bin/sh"},
    "workspace_roots": ["relative", "/srv/ws"],
    "network": "bridged",
    "seccomp": {"deny": ["@mout"]},
    "limits": {"pids_max": 1, "memory_max_bytes": "lots"},
    "deadlines": {"idle_seconds": -1}
  })";
  EXPECT_EQ(Errors(text),
            (std::vector<std::string>{
                E("/command: is required for print and interactive policies (the template the "
                  "task is appended to)"),
                E("/bypasses_agent_permissions: is required for print and interactive policies"),
                E("/run_as/user: \"root\" is refused unless run_as.allow_root is true"),
                E("/run_as/shell: unknown field (known: allow_root, user, group)"),
                E("/workspace_roots/0: path \"relative\" is not an absolute path"),
                E("/network: expected one of \"none\", \"host\", \"allowlist\"; got \"bridged\""),
                E("/seccomp/deny/0: unknown syscall group \"@mout\""),
                E("/limits/memory_max_bytes: expected unsigned integer, got string"),
                E("/limits/pids_max: value 1 is out of range [8, 4194304]"),
                E("/deadlines/idle_seconds: expected unsigned integer, got negative integer"),
                E("/colour: unknown field (known: description, type, command, "
                  "own_command_types, bypasses_agent_permissions, run_as, workspace_owner, hide, "
                  "workspace_roots, "
                  "default_workspace, "
                  "mounts, state_dirs, home, network, seccomp, rlimits, limits, deadlines, "
                  "output, env, request_env)"),
            }));
}

TEST(PolicyLoaderTest, RootAllowedOnlyWhenExplicit) {
  auto p = MustParse(R"({"description": "d", "type": "exec",
                         "run_as": {"user": "root", "group": "root", "allow_root": true},
                         "workspace_roots": ["/srv/ws"]})");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->run_as.allow_root);
}

TEST(PolicyLoaderTest, PolicyNameIsTheFileStem) {
  EXPECT_EQ(Errors(Doc(), "/p/Bad_Name.json"),
            std::vector<std::string>{
                "/p/Bad_Name.json: policy name \"Bad_Name\" must match ^[a-z0-9][a-z0-9-]{0,63}$"});
  EXPECT_EQ(Errors(Doc(), "/p/exec.jsonc"),
            std::vector<std::string>{"/p/exec.jsonc: a policy file is named NAME.json"});
  EXPECT_EQ(MustParse(Doc(), "/p/claude-opus-4.json")->name, "claude-opus-4");
}

TEST(PolicyLoaderTest, LoadPolicyFileReportsUnreadableFiles) {
  TempDir dir;
  const std::string missing = dir.path() + "/missing.json";
  EXPECT_EQ(LoadPolicyFile(missing).errors,
            std::vector<std::string>{missing + ": open(policy file \"" + missing +
                                     "\"): ENOENT (No such file or directory)"});
  const std::string sub = dir.Mkdir("sub.json");
  EXPECT_EQ(LoadPolicyFile(sub).errors,
            std::vector<std::string>{sub + ": policy file \"" + sub + "\" is not a regular file"});
  const std::string ok = dir.Write("ok.json", Doc());
  EXPECT_NE(LoadPolicyFile(ok).policy, nullptr);
  const std::string loose = dir.Write("loose.json", Doc(), 0666);
  const auto errors = LoadPolicyFile(loose, {.require_root_owned = true}).errors;
  ASSERT_EQ(errors.size(), 1u);
  if (::getuid() == 0) {
    EXPECT_EQ(errors[0], loose + ": policy file \"" + loose +
                             "\" has mode 0666: group and others may not write it");
  } else {
    EXPECT_NE(errors[0].find("not uid 0"), std::string::npos) << errors[0];
  }
}

// ---------------------------------------------------------------------------------------
// PolicySet

TEST(PolicySetTest, LoadsEveryJsonFileAndNeedsExec) {
  TempDir dir;
  dir.Write("exec.json", Doc());
  dir.Write("claude.json", Doc(R"("command": ["claude", "--print"],
                                  "bypasses_agent_permissions": true)",
                               "print"));
  dir.Write("README.md", "not a policy");
  dir.Write(".hidden.json", "not a policy either");
  auto set = PolicySet::Load(dir.path());
  ASSERT_TRUE(set.has_value()) << set.error().what;
  EXPECT_EQ(set->all().size(), 2u);
  ASSERT_NE(set->Find("claude"), nullptr);
  EXPECT_EQ(set->Find("claude")->type, SessionType::kPrint);
  EXPECT_EQ(set->Find("nope"), nullptr);
  EXPECT_EQ(set->dir(), dir.path());

  ASSERT_EQ(::unlink((dir.path() + "/exec.json").c_str()), 0);
  auto no_exec = PolicySet::Load(dir.path());
  ASSERT_FALSE(no_exec.has_value());
  EXPECT_EQ(no_exec.error().what,
            dir.path() + ": no exec.json (the policy of exec sessions without a preset)");

  dir.Write("exec.json", Doc(R"("command": ["x"], "bypasses_agent_permissions": false)", "print"));
  auto wrong_type = PolicySet::Load(dir.path());
  ASSERT_FALSE(wrong_type.has_value());
  EXPECT_EQ(wrong_type.error().what,
            dir.path() + "/exec.json:/type: the exec policy must have type \"exec\"");

  auto missing = PolicySet::Load(dir.path() + "/nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().errnum, ENOENT);
}

TEST(PolicySetTest, ReloadKeepsTheOldSetOnError) {
  TempDir dir;
  dir.Write("exec.json", Doc(R"("limits": {"pids_max": 100})"));
  dir.Write("other.json", Doc());
  auto loaded = PolicySet::Load(dir.path());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().what;
  PolicySet current = std::move(*loaded);
  std::shared_ptr<const Policy> held = current.Find("exec");

  // Two broken files: every problem of every file is reported, nothing is swapped in.
  dir.Write("exec.json", Doc(R"("limits": {"pids_max": 200}, "bogus": 1)"));
  dir.Write("other.json", "{");
  auto reloaded = current.Reload();
  ASSERT_FALSE(reloaded.has_value());
  const std::string exec_file = dir.path() + "/exec.json";
  const std::string other_file = dir.path() + "/other.json";
  EXPECT_EQ(reloaded.error().what,
            exec_file +
                ":/bogus: unknown field (known: description, type, command, "
                "own_command_types, bypasses_agent_permissions, run_as, workspace_owner, hide, "
                "workspace_roots, "
                "default_workspace, "
                "mounts, state_dirs, home, network, seccomp, rlimits, limits, deadlines, "
                "output, env, request_env)\n" +
                other_file +
                ": JSON: parse error at line 1, column 2: syntax error while parsing object key - "
                "unexpected end of input; expected string literal");
  EXPECT_EQ(current.Find("exec")->limits.pids_max, 100u);  // the old set stays in force
  EXPECT_EQ(current.all().size(), 2u);

  dir.Write("exec.json", Doc(R"("limits": {"pids_max": 200})"));
  ASSERT_EQ(::unlink(other_file.c_str()), 0);
  reloaded = current.Reload();
  ASSERT_TRUE(reloaded.has_value()) << reloaded.error().what;
  current = std::move(*reloaded);
  EXPECT_EQ(current.Find("exec")->limits.pids_max, 200u);
  EXPECT_EQ(current.all().size(), 1u);
  EXPECT_EQ(held->limits.pids_max, 100u);  // sessions holding the old policy keep it
}

// ---------------------------------------------------------------------------------------
// Tighten

TEST(TightenTest, AbsentFieldsKeepThePolicyValues) {
  auto p = MustParse(Doc(R"("limits": {"cpu_max_percent": 200})"));
  auto e = Tighten(*p, {});
  ASSERT_TRUE(e.has_value()) << e.error().what;
  EXPECT_EQ(e->policy.limits.memory_max_bytes, p->limits.memory_max_bytes);
  EXPECT_EQ(e->policy.limits.pids_max, p->limits.pids_max);
  EXPECT_EQ(e->policy.limits.cpu_max_percent, 200u);
  EXPECT_EQ(e->policy.deadlines.wall_seconds, p->deadlines.wall_seconds);
  EXPECT_EQ(e->policy.deadlines.idle_seconds, p->deadlines.idle_seconds);
  EXPECT_EQ(e->policy.seccomp_program, p->seccomp_program);
}

TEST(TightenTest, LoweringIsAllowed) {
  auto p = MustParse(Doc(R"("limits": {"cpu_max_percent": 200})"));
  RequestedLimits r;
  r.memory_max_bytes = 512ull << 20;
  r.memory_swap_max_bytes = 0;
  r.pids_max = 64;
  r.cpu_max_percent = 50;
  r.wall_seconds = 60;
  r.idle_seconds = 30;
  auto e = Tighten(*p, r);
  ASSERT_TRUE(e.has_value()) << e.error().what;
  EXPECT_EQ(e->policy.limits.memory_max_bytes, 512ull << 20);
  EXPECT_EQ(e->policy.limits.pids_max, 64u);
  EXPECT_EQ(e->policy.limits.cpu_max_percent, 50u);
  EXPECT_EQ(e->policy.deadlines.wall_seconds, 60u);
  EXPECT_EQ(e->policy.deadlines.idle_seconds, 30u);
  EXPECT_EQ(p->limits.pids_max, 512u);  // the policy itself is untouched
}

TEST(TightenTest, RaisingIsAPolicyViolation) {
  auto p = MustParse(Doc(R"("limits": {"cpu_max_percent": 200})"));
  struct Case {
    RequestedLimits r;
    std::string what;
  };
  std::vector<Case> cases(5);
  cases[0].r.memory_max_bytes = 4ull << 30;
  cases[0].what =
      "limits.memory_max_bytes: requested 4294967296 exceeds the "
      "policy's 2147483648 (policy \"t\"); a request may only lower a limit";
  cases[1].r.pids_max = 513;
  cases[1].what =
      "limits.pids_max: requested 513 exceeds the policy's 512 "
      "(policy \"t\"); a request may only lower a limit";
  cases[2].r.cpu_max_percent = 400;
  cases[2].what =
      "limits.cpu_max_percent: requested 400 exceeds the policy's "
      "200 (policy \"t\"); a request may only lower a limit";
  cases[3].r.wall_seconds = 0;  // "none" is looser than any deadline
  cases[3].what =
      "deadlines.wall_seconds: requested 0 (none) exceeds the "
      "policy's 3600 (policy \"t\"); a request may only lower a limit";
  cases[4].r.memory_swap_max_bytes = 1;
  cases[4].what =
      "limits.memory_swap_max_bytes: requested 1 exceeds the "
      "policy's 0 (policy \"t\"); a request may only lower a limit";
  for (const Case& c : cases) {
    auto e = Tighten(*p, c.r);
    ASSERT_FALSE(e.has_value());
    EXPECT_EQ(e.error().what, c.what);
    EXPECT_EQ(e.error().code, ErrorCode::kPolicyViolation);
  }
}

TEST(TightenTest, WherePolicyHasNoLimitAnyValueInRangeIsATightening) {
  auto p = MustParse(Doc(R"("deadlines": {"wall_seconds": 0, "idle_seconds": 0})"));
  RequestedLimits r;
  r.wall_seconds = 86400;
  r.idle_seconds = 0;
  r.cpu_max_percent = 800;
  auto e = Tighten(*p, r);
  ASSERT_TRUE(e.has_value()) << e.error().what;
  EXPECT_EQ(e->policy.deadlines.wall_seconds, 86400u);
  EXPECT_EQ(e->policy.deadlines.idle_seconds, 0u);
  EXPECT_EQ(e->policy.limits.cpu_max_percent, 800u);
}

TEST(TightenTest, OutOfRangeIsABadRequest) {
  auto p = MustParse(Doc());
  RequestedLimits r;
  r.pids_max = 0;
  auto e = Tighten(*p, r);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().what, "limits.pids_max: requested 0 is outside 8..4194304");
  EXPECT_EQ(e.error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(PlainError("open(x)").code, ErrorCode::kInternal);
}

// ---------------------------------------------------------------------------------------
// ResolveWorkspace

class WorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.Mkdir("root");
    tmp_.Mkdir("root/proj");
    tmp_.Mkdir("root/proj/sub");
    tmp_.Mkdir("root/secret");
    tmp_.Mkdir("root2");
    tmp_.Mkdir("outside");
    tmp_.Write("root/file", "x");
    ASSERT_EQ(::symlink((tmp_.path() + "/outside").c_str(), (root_ + "/escape").c_str()), 0);
    ASSERT_EQ(::symlink((root_ + "/proj").c_str(), (root_ + "/absolute-link").c_str()), 0);
    ASSERT_EQ(::symlink("proj/sub", (root_ + "/inner-link").c_str()), 0);
    ASSERT_EQ(::symlink("..", (root_ + "/up-link").c_str()), 0);
    policy_.name = "t";
    policy_.workspace_roots = {root_};
    policy_.hide = {root_ + "/secret"};
  }
  // The one refusal every unusable cwd gets.
  void ExpectRefused(const std::string& cwd) {
    auto r = ResolveWorkspace(policy_, cwd);
    ASSERT_FALSE(r.has_value()) << "cwd " << cwd << " resolved to " << r.value();
    EXPECT_EQ(r.error().code, ErrorCode::kBadRequest) << cwd;
    EXPECT_EQ(r.error().field, "/cwd") << cwd;
    std::string how = "absolute";
    if (!policy_.default_workspace.empty()) {
      how += ", or relative to the default workspace \"" + policy_.default_workspace +
             "\" and below it";
    }
    EXPECT_EQ(r.error().ToString(),
              "cwd \"" + cwd +
                  "\" is not an existing directory strictly inside the workspace roots of "
                  "policy \"t\" (\"" +
                  root_ + "\"); give a directory below one of the roots (" + how +
                  "; a root itself is refused, and symlinks and `..` may not leave the root)")
        << cwd;
  }
  TempDir tmp_;
  std::string root_;
  Policy policy_;
};

TEST_F(WorkspaceTest, InsideARootResolves) {
  EXPECT_EQ(ResolveWorkspace(policy_, root_ + "/proj").value(), root_ + "/proj");
  EXPECT_EQ(ResolveWorkspace(policy_, root_ + "/proj/").value(), root_ + "/proj");
  EXPECT_EQ(ResolveWorkspace(policy_, root_ + "/inner-link").value(), root_ + "/proj/sub");
  EXPECT_EQ(ResolveWorkspace(policy_, root_ + "/proj/sub/..").value(), root_ + "/proj");
  EXPECT_EQ(ResolveWorkspace(policy_, root_ + "/proj//./sub").value(), root_ + "/proj/sub");
}

// Missing, not a directory, outside, a root, hidden, or leaving the root through a symlink or
// `..`: one code and one sentence, so that the answer tells nothing about what exists.
TEST_F(WorkspaceTest, EveryUnusableCwdGetsTheSameAnswer) {
  for (const std::string& cwd : std::vector<std::string>{
           root_ + "/missing",
           root_ + "/missing/deeper",
           root_ + "/file",
           root_ + "/file/",
           tmp_.path() + "/outside",
           "/etc",
           "/root/.ssh",
           "/",
           root_ + "2",  // a sibling whose name merely starts with the root's
           root_ + "/escape",
           root_ + "/absolute-link",  // even to inside the root: RESOLVE_BENEATH refuses it
           root_ + "/up-link/outside",
           root_ + "/proj/../../outside",
           root_ + "/../outside",
           root_,
           root_ + "/",
           root_ + "/.",
           root_ + "/proj/..",
           root_ + "/inner-link/../..",
           root_ + "/secret",
           root_ + "/secret/x",
       }) {
    ExpectRefused(cwd);
  }
}

// Nothing outside the roots is looked up: an absolute cwd that does not start with a root is
// refused before any system call, whatever exists there.
TEST_F(WorkspaceTest, AnAbsoluteCwdOutsideTheRootsIsNeverLookedUp) {
  const std::string unreadable = tmp_.Mkdir("outside/locked", 0);
  ExpectRefused(unreadable);
  ExpectRefused(unreadable + "/anything");
  ::chmod(unreadable.c_str(), 0755);
}

// cwd_within (a scoped token's workspaces, attack review F3 of issue 15): the cwd must be at or
// below one of them, each opened beneath its root without following a symlink, the rest of the
// cwd beneath it. Tree: root/ws-a (the token's), root/ws-b (another owner's), and inside ws-a
// the symlinks a session of the token could plant.
class CwdWithinTest : public WorkspaceTest {
 protected:
  void SetUp() override {
    WorkspaceTest::SetUp();
    a_ = tmp_.Mkdir("root/ws-a");
    tmp_.Mkdir("root/ws-a/sub");
    b_ = tmp_.Mkdir("root/ws-b");
    tmp_.Mkdir("root/ws-b/sub");
    tmp_.Mkdir("root/ws-ab");  // a sibling whose name merely starts with ws-a's
    ASSERT_EQ(::symlink(b_.c_str(), (a_ + "/to-b").c_str()), 0);          // absolute
    ASSERT_EQ(::symlink("../ws-b", (a_ + "/rel-b").c_str()), 0);          // relative, climbs
    ASSERT_EQ(::symlink("sub", (a_ + "/to-sub").c_str()), 0);             // stays inside
    ASSERT_EQ(::symlink(a_.c_str(), (root_ + "/link-to-a").c_str()), 0);  // the prefix itself
    ASSERT_EQ(::symlink("ws-a", (root_ + "/rel-link-to-a").c_str()), 0);
  }
  void ExpectWithinRefused(const std::string& cwd, const std::vector<std::string>& within) {
    auto r = ResolveWorkspace(policy_, cwd, within);
    ASSERT_FALSE(r.has_value()) << "cwd " << cwd << " resolved to " << r.value();
    EXPECT_EQ(r.error().code, ErrorCode::kPolicyViolation) << cwd;
    EXPECT_EQ(r.error().field, "/cwd") << cwd;
    // One sentence whatever the reason: nothing about what exists where.
    const std::string shown = cwd.empty() ? within.front() : cwd;
    std::string joined;
    for (const auto& w : within) joined += (joined.empty() ? "\"" : ", \"") + w + "\"";
    EXPECT_EQ(r.error().what,
              "cwd \"" + shown +
                  "\" is not an existing directory at or below the workspaces this request may "
                  "create sessions in (" +
                  joined + ", inside the workspace roots of policy \"t\" (\"" + root_ +
                  "\")); give one of them or a directory below one (symlinks and `..` may not "
                  "leave it, no component of the workspace itself may be a symlink, and a root "
                  "itself is refused)")
        << cwd;
  }
  std::string a_;
  std::string b_;
};

TEST_F(CwdWithinTest, InsideTheWorkspaceResolves) {
  const std::vector<std::string> within = {a_};
  EXPECT_EQ(ResolveWorkspace(policy_, a_, within).value(), a_);
  EXPECT_EQ(ResolveWorkspace(policy_, a_ + "/", within).value(), a_);
  EXPECT_EQ(ResolveWorkspace(policy_, a_ + "/sub", within).value(), a_ + "/sub");
  EXPECT_EQ(ResolveWorkspace(policy_, a_ + "/to-sub", within).value(), a_ + "/sub");
  EXPECT_EQ(ResolveWorkspace(policy_, a_ + "/sub/..", within).value(), a_);
  // No cwd: the first workspace (the policy has no default_workspace here).
  EXPECT_EQ(ResolveWorkspace(policy_, "", {b_, a_}).value(), b_);
  // Any of several.
  EXPECT_EQ(ResolveWorkspace(policy_, a_ + "/sub", {b_, a_}).value(), a_ + "/sub");
  // A relative cwd is below the default workspace, as ever, and must land in a workspace.
  policy_.default_workspace = a_;
  EXPECT_EQ(ResolveWorkspace(policy_, "sub", within).value(), a_ + "/sub");
}

TEST_F(CwdWithinTest, EverythingOutsideTheWorkspaceIsRefused) {
  const std::vector<std::string> within = {a_};
  for (const std::string& cwd : std::vector<std::string>{
           b_,                      // a sibling workspace
           b_ + "/sub",             //
           root_ + "/ws-ab",        // a sibling named like it
           a_ + "/..",              // `..` out of it
           a_ + "/../ws-b",         //
           a_ + "/sub/../../ws-b",  //
           a_ + "/to-b",            // a planted absolute symlink to the sibling
           a_ + "/to-b/sub",        //
           a_ + "/rel-b",           // a planted relative one
           a_ + "/missing",         // missing: the same answer
           a_ + "/to-b/missing",    //
           root_ + "/proj",         // elsewhere in the root
           tmp_.path() + "/outside",
           "/etc",
           "/",
       }) {
    ExpectWithinRefused(cwd, within);
  }
  // The workspace reached through a symlink in its own path is refused, even though it leads
  // to the workspace itself: the prefix is opened with RESOLVE_NO_SYMLINKS.
  ExpectWithinRefused(root_ + "/link-to-a", {root_ + "/link-to-a"});
  ExpectWithinRefused(root_ + "/link-to-a/sub", {root_ + "/link-to-a"});
  ExpectWithinRefused("", {root_ + "/rel-link-to-a"});
  ExpectWithinRefused(root_ + "/rel-link-to-a/sub", {root_ + "/rel-link-to-a"});
  ExpectWithinRefused(root_ + "/link-to-a", within);
  // A workspace outside every root, or a root itself, gives nothing.
  ExpectWithinRefused(tmp_.path() + "/outside", {tmp_.path() + "/outside"});
  ExpectWithinRefused(root_, {root_});
  ExpectWithinRefused(root_ + "/secret", {root_ + "/secret"});  // hidden
  // A relative cwd that climbs out of the default workspace.
  policy_.default_workspace = a_;
  ExpectWithinRefused("../ws-b", within);
  ExpectWithinRefused("to-b", within);
}

// Control: without cwd_within the same probes reach the sibling workspace; the limit is what
// stops them.
TEST_F(CwdWithinTest, WithoutTheLimitTheSiblingIsReachable) {
  EXPECT_EQ(ResolveWorkspace(policy_, b_).value(), b_);
  EXPECT_EQ(ResolveWorkspace(policy_, a_ + "/rel-b").value(), b_);
  EXPECT_EQ(ResolveWorkspace(policy_, a_ + "/../ws-b").value(), b_);
  EXPECT_EQ(ResolveWorkspace(policy_, root_ + "/rel-link-to-a").value(), a_);
  EXPECT_EQ(ResolveWorkspace(policy_, a_ + "/to-sub").value(), a_ + "/sub");
  // A root's workspace prefix allows anything below the root (and the root itself stays refused).
  EXPECT_EQ(ResolveWorkspace(policy_, b_, {root_}).value(), b_);
}

TEST_F(WorkspaceTest, WithoutADefaultWorkspaceACwdMustBeAbsolute) {
  const std::string roots = "the workspace roots of policy \"t\" (\"" + root_ + "\")";
  EXPECT_EQ(ResolveWorkspace(policy_, "proj").error().what,
            "cwd \"proj\" is relative, and policy \"t\" has no default_workspace; give an "
            "absolute cwd inside one of " +
                roots);
  EXPECT_EQ(ResolveWorkspace(policy_, "").error().what,
            "no cwd was given, and policy \"t\" has no default_workspace; give an absolute cwd "
            "inside one of " +
                roots);
  EXPECT_EQ(ResolveWorkspace(policy_, "").error().field, "/cwd");
  EXPECT_EQ(ResolveWorkspace(policy_, std::string("/a\0b", 4)).error().code,
            ErrorCode::kBadRequest);
  policy_.default_workspace = root_ + "/proj";
  EXPECT_EQ(ResolveWorkspace(policy_, "").value(), root_ + "/proj");
}

// A relative cwd is resolved beneath the default workspace (the original server resolved it
// against its own directory) and may not leave it, even into another workspace of the root.
TEST_F(WorkspaceTest, RelativeCwdIsBelowTheDefaultWorkspace) {
  policy_.default_workspace = root_ + "/proj";
  EXPECT_EQ(ResolveWorkspace(policy_, "sub").value(), root_ + "/proj/sub");
  EXPECT_EQ(ResolveWorkspace(policy_, "./sub/").value(), root_ + "/proj/sub");
  EXPECT_EQ(ResolveWorkspace(policy_, ".").value(), root_ + "/proj");
  EXPECT_EQ(ResolveWorkspace(policy_, "sub/..").value(), root_ + "/proj");
  for (const char* cwd : {"..", "../proj", "../../outside", "nope", "sub/../../secret"}) {
    ExpectRefused(cwd);
  }
}

// The default workspace is the operator's: when it is missing or no usable workspace, a
// request without cwd gets host_setup.
TEST_F(WorkspaceTest, ABadDefaultWorkspaceIsHostSetup) {
  policy_.default_workspace = root_ + "/default";
  policy_.run_as.user = "nobody";
  auto r = ResolveWorkspace(policy_, "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kHostSetup);
  EXPECT_EQ(r.error().what, "the default workspace \"" + root_ +
                                "/default\" of policy \"t\" cannot be opened (No such file or "
                                "directory); create it, writable by the policy's run_as user "
                                "\"nobody\" (docs/deploy.md), or give a cwd");
  policy_.default_workspace = root_;
  r = ResolveWorkspace(policy_, "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kHostSetup);
  EXPECT_NE(r.error().what.find("is not a directory strictly inside"), std::string::npos)
      << r.error().what;
}

// ---------------------------------------------------------------------------------------
// BuildSpawnRequest

class BuildSpawnRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ws_ = tmp_.Mkdir("ws");
    tmp_.Mkdir("ws/proj");
    creds_ = tmp_.Mkdir("creds", 0700);
    tmp_.Write("creds/api-key", "s3cret-value\n", 0600);
    tmp_.Write("creds/loose", "x", 0644);
    tmp_.Write("creds/empty", "\n", 0600);
    ASSERT_EQ(::symlink("api-key", (creds_ + "/link").c_str()), 0);
    host_.credentials_dir = creds_;
    host_.credentials_owner = ::getuid();
    host_.lookup_user = [](const std::string& u) -> std::optional<UserIds> {
      static const std::map<std::string, UserIds> users = {
          {"agent", {1234, 2345}}, {"toor", {0, 0}}, {"nobody", {65534, 65534}}};
      auto it = users.find(u);
      return it == users.end() ? std::nullopt : std::optional<UserIds>(it->second);
    };
    host_.lookup_group = [](const std::string& g) -> std::optional<gid_t> {
      return g == "agents" ? std::optional<gid_t>(3456) : std::nullopt;
    };
    host_.getenv = [](const std::string& n) -> std::optional<std::string> {
      if (n == "TZ") return "Europe/Paris";
      return std::nullopt;
    };
  }

  std::shared_ptr<const Policy> Load(const std::string& extra, const std::string& type = "exec",
                                     const std::string& user = "agent") {
    return MustParse(R"({"description": "d", "type": ")" + type + R"(", "run_as": {"user": ")" +
                     user + R"("}, "workspace_roots": [")" + ws_ + "\"]" +
                     (extra.empty() ? "" : ", " + extra) + "}");
  }
  Result<sandbox::SpawnRequest> Build(const Policy& p, SessionLaunch launch) {
    auto e = Tighten(p, {});
    EXPECT_TRUE(e.has_value());
    effective_ = std::move(*e);
    return BuildSpawnRequest(effective_, launch, host_);
  }
  SessionLaunch Launch(const std::string& task = "make test") {
    SessionLaunch l;
    l.task = task;
    l.cwd = ws_ + "/proj";
    return l;
  }

  TempDir tmp_;
  std::string ws_;
  std::string creds_;
  SpawnHost host_;
  EffectivePolicy effective_;
};

TEST_F(BuildSpawnRequestTest, ExecDefaultsToShell) {
  auto p = Load("");
  auto r = Build(*p, Launch("echo hi; exit 3"));
  ASSERT_TRUE(r.has_value()) << r.error().what;
  EXPECT_EQ(r->argv, (std::vector<std::string>{"/bin/sh", "-lc", "echo hi; exit 3"}));
  EXPECT_EQ(r->workspace, ws_ + "/proj");
  EXPECT_EQ(r->uid, 1234u);
  EXPECT_EQ(r->gid, 2345u);
  EXPECT_FALSE(r->allow_root);
  EXPECT_EQ(r->stdio, sandbox::StdioMode::kPipes);
  EXPECT_EQ(r->network, sandbox::NetworkMode::kNone);
  EXPECT_EQ(r->seccomp, effective_.policy.seccomp_program->fprog());
  EXPECT_TRUE(r->env.empty());
  EXPECT_EQ(r->limits.memory_max_bytes, 2ull << 30);
  EXPECT_EQ(r->limits.memory_swap_max_bytes, 0u);
  EXPECT_EQ(r->limits.pids_max, 512u);
  EXPECT_FALSE(r->limits.cpu_max.has_value());
  EXPECT_TRUE(r->rlimits.empty());  // sandbox::DefaultRlimits() apply
  ASSERT_EQ(r->binds.size(), 1u);
  EXPECT_EQ(r->binds[0].source, ws_ + "/proj");
  EXPECT_EQ(r->binds[0].target, ws_ + "/proj");
  EXPECT_EQ(r->binds[0].mode, sandbox::BindMode::kReadWrite);
  // The policy's hidden paths, then the workspace roots (other sessions' workspaces).
  std::vector<std::string> hidden = effective_.policy.HiddenPaths();
  hidden.push_back(ws_);
  EXPECT_EQ(r->hide, hidden);
}

TEST_F(BuildSpawnRequestTest, TaskIsAppendedLastToTheTemplate) {
  auto p = Load(R"("command": ["claude", "--print", "--model", "opus"],
                   "bypasses_agent_permissions": true)",
                "print");
  auto r = Build(*p, Launch("fix the bug"));
  ASSERT_TRUE(r.has_value()) << r.error().what;
  EXPECT_EQ(r->argv,
            (std::vector<std::string>{"claude", "--print", "--model", "opus", "fix the bug"}));

  SessionLaunch own = Launch();
  own.command = "/bin/rm";
  own.args = std::vector<std::string>{"-rf"};
  auto refused = Build(*p, own);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().what,
            "policy \"t\" fixes the command; a request under it may not give command or args");
  EXPECT_EQ(refused.error().field, "/command");
  EXPECT_EQ(refused.error().code, ErrorCode::kPolicyViolation);
  own.command.reset();
  EXPECT_EQ(Build(*p, own).error().field, "/args");
}

TEST_F(BuildSpawnRequestTest, ExecRequestMayNameItsCommand) {
  auto p = Load("");
  SessionLaunch l = Launch("file.txt");
  l.command = "wc";
  l.args = std::vector<std::string>{"-l"};
  auto r = Build(*p, l);
  ASSERT_TRUE(r.has_value()) << r.error().what;
  EXPECT_EQ(r->argv, (std::vector<std::string>{"wc", "-l", "file.txt"}));

  // Empty args are args: the task is the command's only argument.
  l.args = std::vector<std::string>{};
  EXPECT_EQ(Build(*p, l)->argv, (std::vector<std::string>{"wc", "file.txt"}));
}

// The original server's rules: a command without args is a shell that gets the task as its
// script (`"command":"bash"` picks the shell); args without a command are /bin/sh's.
TEST_F(BuildSpawnRequestTest, ExecCommandWithoutArgsRunsDashLc) {
  auto p = Load("");
  SessionLaunch l = Launch("echo $0");
  l.command = "bash";
  EXPECT_EQ(Build(*p, l)->argv, (std::vector<std::string>{"bash", "-lc", "echo $0"}));
  l.command.reset();
  l.args = std::vector<std::string>{"-e", "-c"};
  EXPECT_EQ(Build(*p, l)->argv, (std::vector<std::string>{"/bin/sh", "-e", "-c", "echo $0"}));
  l.command = "";
  EXPECT_EQ(Build(*p, l).error().field, "/command");
}

// A print or interactive session with its own command under an exec policy (the session
// manager admits it only when the policy lists the type in own_command_types, and sets the
// effective type): COMMAND ARGS... TASK, and COMMAND TASK without args.
TEST_F(BuildSpawnRequestTest, OwnCommandForPrintAndInteractive) {
  auto p = Load(R"("own_command_types": ["print", "interactive"])");
  ASSERT_EQ(p->own_command_types,
            (std::vector<SessionType>{SessionType::kPrint, SessionType::kInteractive}));
  auto e = Tighten(*p, {});
  ASSERT_TRUE(e.has_value());
  e->policy.type = SessionType::kPrint;
  SessionLaunch l = Launch("hello");
  l.command = "mycli";
  l.args = std::vector<std::string>{"--print"};
  auto r = BuildSpawnRequest(*e, l, host_);
  ASSERT_TRUE(r.has_value()) << r.error().what;
  EXPECT_EQ(r->argv, (std::vector<std::string>{"mycli", "--print", "hello"}));
  EXPECT_EQ(r->stdio, sandbox::StdioMode::kPipes);
  l.args.reset();
  EXPECT_EQ(BuildSpawnRequest(*e, l, host_)->argv, (std::vector<std::string>{"mycli", "hello"}));
  // Without a command there is nothing to run (exec's /bin/sh -lc is for exec sessions).
  l.command.reset();
  auto none = BuildSpawnRequest(*e, l, host_);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().field, "/command");
  EXPECT_EQ(none.error().what,
            "print sessions under policy \"t\" need their own command (and args), or a preset");
  e->policy.type = SessionType::kInteractive;
  l.command = "bash";
  auto pty = BuildSpawnRequest(*e, l, host_);
  ASSERT_TRUE(pty.has_value()) << pty.error().what;
  EXPECT_EQ(pty->stdio, sandbox::StdioMode::kPty);
}

TEST_F(BuildSpawnRequestTest, InteractiveGetsAPty) {
  auto p = Load(R"("command": ["claude"], "bypasses_agent_permissions": true)", "interactive");
  auto r = Build(*p, Launch());
  ASSERT_TRUE(r.has_value()) << r.error().what;
  EXPECT_EQ(r->stdio, sandbox::StdioMode::kPty);
}

TEST_F(BuildSpawnRequestTest, EnvironmentIsAnAllowlistWithSecrets) {
  auto p = Load(R"("env": {"pass": ["TZ", "HOSTNAME"],
                           "set": {"PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8"},
                           "secrets": {"API_KEY": "api-key"}},
                   "request_env": {"allow": ["LANG", "DEBUG"]})");
  SessionLaunch l = Launch();
  l.env = {{"LANG", "fr_FR.UTF-8"}, {"DEBUG", "1"}};
  auto r = Build(*p, l);
  ASSERT_TRUE(r.has_value()) << r.error().what;
  // Sorted by name; HOSTNAME is not in the (fake) supervisor environment; the request
  // overrides LANG; the secret's trailing newline is dropped.
  EXPECT_EQ(r->env, (std::vector<std::string>{"API_KEY=s3cret-value", "DEBUG=1", "LANG=fr_FR.UTF-8",
                                              "PATH=/opt/bin:/usr/bin", "TZ=Europe/Paris"}));
  EXPECT_EQ(r->search_path, "/opt/bin:/usr/bin");

  l.env = {{"LD_PRELOAD", "/tmp/x.so"}};
  auto refused = Build(*p, l);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().what,
            "env \"LD_PRELOAD\" is not in request_env.allow of policy \"t\" (\"LANG\", "
            "\"DEBUG\")");
  EXPECT_EQ(refused.error().field, "/env/LD_PRELOAD");
  l.env = {{"API_KEY", "mine"}};
  EXPECT_EQ(Build(*p, l).error().code, ErrorCode::kPolicyViolation);
  l.env = {{"DEBUG", std::string("a\0b", 3)}};
  EXPECT_EQ(Build(*p, l).error().code, ErrorCode::kBadRequest);
}

TEST_F(BuildSpawnRequestTest, SecretsMustBePrivateRegularFiles) {
  struct Case {
    std::string credential;
    std::string what;
  };
  const Case cases[] = {
      {"loose",
       "policy \"t\", env.secrets.K: credential \"loose\" has mode 0644: group may not "
       "write it and others may not read it"},
      {"missing", "policy \"t\", env.secrets.K: open(credential \"missing\")"},
      {"link", "policy \"t\", env.secrets.K: open(credential \"link\")"},
      {"empty", "policy \"t\", env.secrets.K: credential \"empty\" is empty"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.credential);
    auto p = Load(R"("env": {"secrets": {"K": ")" + c.credential + "\"}}");
    auto r = Build(*p, Launch());
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().what, c.what);
    EXPECT_EQ(r.error().what.find("s3cret"), std::string::npos);
  }
  // The directory itself must not be writable by others.
  ASSERT_EQ(::chmod(creds_.c_str(), 0777), 0);
  auto p = Load(R"("env": {"secrets": {"K": "api-key"}})");
  auto r = Build(*p, Launch());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().what, "policy \"t\": credentials directory \"" + creds_ +
                                "\" must belong to uid " + std::to_string(::getuid()) +
                                " and not be writable by group or others");
  ASSERT_EQ(::chmod(creds_.c_str(), 0700), 0);
  host_.credentials_owner = ::getuid() + 1;
  EXPECT_FALSE(Build(*p, Launch()).has_value());

  // A missing directory is the host's setup to fix, said as such.
  host_.credentials_dir = tmp_.path() + "/no-creds";
  auto absent = Build(*p, Launch());
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().code, ErrorCode::kHostSetup);
  EXPECT_EQ(absent.error().errnum, 0);
  EXPECT_EQ(absent.error().what,
            "the credentials directory \"" + tmp_.path() +
                "/no-creds\" does not exist, and policy \"t\" reads the secret \"api-key\" "
                "from it; create the directory (owned by root, mode 0700) with that file "
                "(docs/policies.md, \"Installing the agents and their credentials\")");
}

// The credential gateway (issue 14): the session's environment names its loopback endpoint and
// a placeholder; the secret goes only into what EgressLink hands monkeyproof-egress.
TEST_F(BuildSpawnRequestTest, GatewayEndpointsKeepTheSecretOutOfTheSession) {
  auto p = Load(R"("network": {"mode": "allowlist", "allow": [], "gateway": [
      {"base_url_env": "ANTHROPIC_BASE_URL", "key_env": "ANTHROPIC_API_KEY",
       "upstream": "https://api.anthropic.com",
       "auth": {"header": "x-api-key", "secret": "api-key"}},
      {"base_url_env": "OPENAI_BASE_URL", "upstream": "https://api.openai.com/v1",
       "auth": {"header": "authorization", "prefix": "Bearer ", "secret": "api-key"}}]})");
  ASSERT_NE(p, nullptr);
  auto r = Build(*p, Launch());
  ASSERT_TRUE(r.has_value()) << r.error().what;
  EXPECT_EQ(r->env, (std::vector<std::string>{"ANTHROPIC_API_KEY=monkeyproof-gateway-placeholder",
                                              "ANTHROPIC_BASE_URL=http://127.0.0.1:3129",
                                              "OPENAI_BASE_URL=http://127.0.0.1:3130"}));
  for (const std::string& e : r->env) EXPECT_EQ(e.find("s3cret"), std::string::npos) << e;

  auto endpoints = ReadGatewayEndpoints(p->gateway, host_, "policy \"t\"");
  ASSERT_TRUE(endpoints.has_value()) << endpoints.error().what;
  ASSERT_EQ(endpoints->size(), 2u);
  EXPECT_EQ((*endpoints)[0].upstream, "https://api.anthropic.com");
  EXPECT_EQ((*endpoints)[0].header, "x-api-key");
  EXPECT_EQ((*endpoints)[0].value, "s3cret-value");
  EXPECT_EQ((*endpoints)[1].header, "authorization");
  EXPECT_EQ((*endpoints)[1].value, "Bearer s3cret-value");
}

TEST_F(BuildSpawnRequestTest, GatewaySecretsAreCheckedLikeEnvSecrets) {
  tmp_.Write("creds/two-lines", "s3cret-one\ns3cret-two\n", 0600);
  tmp_.Write("creds/not-ascii", "s3cret-\xff-value\n", 0600);
  tmp_.Write("creds/spaced", "s3cret value\n", 0600);
  tmp_.Write("creds/long", std::string(5000, 'k') + "\n", 0600);
  struct Case {
    std::string credential;
    std::string what;
  };
  const Case cases[] = {
      {"loose",
       "policy \"t\", network.gateway[0]: credential \"loose\" has mode 0644: group may not "
       "write it and others may not read it"},
      {"missing", "policy \"t\", network.gateway[0]: open(credential \"missing\")"},
      {"link", "policy \"t\", network.gateway[0]: open(credential \"link\")"},
      {"long",
       "policy \"t\", network.gateway[0]: credential \"long\" is longer than a gateway "
       "endpoint's 4096 bytes (with its prefix)"},
  };
  // Keys the handover and a header value cannot carry (review rev18, findings 2 and 3).
  for (const char* bad : {"empty", "two-lines", "not-ascii", "spaced"}) {
    const std::string what = std::string("policy \"t\", network.gateway[0]: credential \"") + bad +
                             "\" is empty or has a byte that is not visible ASCII (a space, a "
                             "line break, a control or non-ASCII byte); write the key alone on "
                             "one line";
    auto p = Load(R"("network": {"mode": "allowlist", "allow": [], "gateway": [
        {"base_url_env": "B", "upstream": "https://a.example",
         "auth": {"header": "x-api-key", "secret": ")" +
                  std::string(bad) + "\"}}]}");
    ASSERT_NE(p, nullptr);
    auto r = ReadGatewayEndpoints(p->gateway, host_, "policy \"t\"");
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().what, what);
    EXPECT_EQ(r.error().code, ErrorCode::kHostSetup);
    EXPECT_EQ(r.error().ToString().find("s3cret"), std::string::npos);
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.credential);
    auto p = Load(R"("network": {"mode": "allowlist", "allow": [], "gateway": [
        {"base_url_env": "B", "upstream": "https://a.example",
         "auth": {"header": "x-api-key", "secret": ")" +
                  c.credential + "\"}}]}");
    ASSERT_NE(p, nullptr);
    auto r = ReadGatewayEndpoints(p->gateway, host_, "policy \"t\"");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().what, c.what);
    EXPECT_EQ(r.error().code, ErrorCode::kHostSetup);
    EXPECT_EQ(r.error().ToString().find("s3cret"), std::string::npos);
  }
  // Without the directory: the host's setup, said as for env.secrets.
  auto p = Load(R"("network": {"mode": "allowlist", "allow": [], "gateway": [
      {"base_url_env": "B", "upstream": "https://a.example",
       "auth": {"header": "x-api-key", "secret": "api-key"}}]})");
  host_.credentials_dir = tmp_.path() + "/no-creds";
  auto absent = ReadGatewayEndpoints(p->gateway, host_, "policy \"t\"");
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().code, ErrorCode::kHostSetup);
  EXPECT_NE(absent.error().what.find("does not exist"), std::string::npos) << absent.error().what;
}

// An optional secret whose file does not exist leaves its variable unset; one whose file exists
// is read and checked like any secret.
TEST_F(BuildSpawnRequestTest, OptionalSecretsMayBeAbsentButNotWrong) {
  auto p = Load(R"("env": {"secrets": {"API_KEY": "api-key"},
                           "optional_secrets": {"OTHER_KEY": "missing", "SAME_KEY": "api-key",
                                                "EMPTY_KEY": "empty"}})");
  ASSERT_EQ(p->env.optional_secrets.size(), 3u);
  auto r = Build(*p, Launch());
  ASSERT_TRUE(r.has_value()) << r.error().what;
  EXPECT_EQ(r->env, (std::vector<std::string>{"API_KEY=s3cret-value", "SAME_KEY=s3cret-value"}));

  // Only absence is optional: a loose mode or a symlink still fails the spawn, naming the field.
  struct Case {
    std::string credential;
    std::string what;
  };
  const Case cases[] = {
      {"loose",
       "policy \"t\", env.optional_secrets.K: credential \"loose\" has mode 0644: group may "
       "not write it and others may not read it"},
      {"link", "policy \"t\", env.optional_secrets.K: open(credential \"link\")"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.credential);
    auto q = Load(R"("env": {"optional_secrets": {"K": ")" + c.credential + "\"}}");
    auto refused = Build(*q, Launch());
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().what.rfind(c.what, 0), 0u) << refused.error().what;
  }
  // The credentials directory is checked as for any secret.
  ASSERT_EQ(::chmod(creds_.c_str(), 0777), 0);
  auto q = Load(R"("env": {"optional_secrets": {"K": "missing"}})");
  EXPECT_FALSE(Build(*q, Launch()).has_value());
  ASSERT_EQ(::chmod(creds_.c_str(), 0700), 0);
  EXPECT_TRUE(Build(*q, Launch()).has_value());
  // Without the directory every optional secret is absent (dev mode has none).
  host_.credentials_dir = tmp_.path() + "/no-creds";
  auto r2 = Build(*q, Launch());
  ASSERT_TRUE(r2.has_value()) << r2.error().what;
  EXPECT_TRUE(r2->env.empty());
}

// home.keep "session": the state dir is no bind but the seed of the session's home (an overlay
// at its own path); "shared": the old read-write bind; other state dirs stay read-only.
TEST_F(BuildSpawnRequestTest, TheHomeIsPrivateUnlessShared) {
  const std::string home = tmp_.Mkdir("home");
  const std::string cache = tmp_.Mkdir("cache");
  for (const char* keep : {"session", "shared"}) {
    SCOPED_TRACE(keep);
    auto p = Load(R"("state_dirs": [")" + home + R"(", ")" + cache + R"("],
                     "home": {"dir": ")" +
                  home + R"(", "keep": ")" + keep + R"(", "max_bytes": 2097152})");
    ASSERT_NE(p, nullptr);
    auto r = BuildSpawnRequest(EffectivePolicy{*p}, Launch(), host_);
    ASSERT_TRUE(r.has_value()) << r.error().what;
    const bool session = std::string(keep) == "session";
    ASSERT_EQ(r->binds.size(), session ? 2u : 3u);
    size_t i = 0;
    if (!session) {
      EXPECT_EQ(r->binds[i].source, home);
      EXPECT_EQ(r->binds[i++].mode, sandbox::BindMode::kReadWrite);
    }
    EXPECT_EQ(r->binds[i].source, cache);
    EXPECT_EQ(r->binds[i++].mode, sandbox::BindMode::kReadOnly);
    EXPECT_EQ(r->binds[i].target, ws_ + "/proj");
    ASSERT_EQ(r->home.has_value(), session);
    if (session) {
      EXPECT_EQ(r->home->seed, home);
      EXPECT_EQ(r->home->target, home);
      EXPECT_EQ(r->home->max_bytes, 2097152u);
    }
  }
}

// A resolv.conf that is a symlink out of the view is bound, read-only at its own path, for
// sessions on the host's network only.
TEST_F(BuildSpawnRequestTest, AResolvConfOutsideTheViewIsBoundForHostNetwork) {
  const std::string run = tmp_.Mkdir("run");
  { std::ofstream(run + "/stub-resolv.conf") << "nameserver 127.0.0.53\n"; }
  const std::string link = tmp_.path() + "/resolv.conf";
  ASSERT_EQ(::symlink((run + "/stub-resolv.conf").c_str(), link.c_str()), 0);
  host_.resolv_conf = link;
  auto host_net = Load(R"("network": "host")");
  auto r = BuildSpawnRequest(EffectivePolicy{*host_net}, Launch(), host_);
  ASSERT_TRUE(r.has_value()) << r.error().what;
  ASSERT_EQ(r->binds.size(), 2u);
  EXPECT_EQ(r->binds[1].source, run + "/stub-resolv.conf");
  EXPECT_EQ(r->binds[1].target, run + "/stub-resolv.conf");
  EXPECT_EQ(r->binds[1].mode, sandbox::BindMode::kReadOnly);
  auto none = Load("");
  auto n = BuildSpawnRequest(EffectivePolicy{*none}, Launch(), host_);
  ASSERT_TRUE(n.has_value()) << n.error().what;
  EXPECT_EQ(n->binds.size(), 1u);  // the workspace alone
  // Control: a resolv.conf inside the view (any regular file in /etc) adds nothing.
  host_.resolv_conf = "/etc/passwd";
  auto in_view = BuildSpawnRequest(EffectivePolicy{*host_net}, Launch(), host_);
  ASSERT_TRUE(in_view.has_value());
  EXPECT_EQ(in_view->binds.size(), 1u);
}

TEST_F(BuildSpawnRequestTest, BindsHidesLimitsAndRlimits) {
  const std::string opt = tmp_.Mkdir("opt");
  const std::string state = tmp_.Mkdir("state");
  auto p = Load(R"("mounts": [{"source": ")" + opt + R"(", "target": "/opt/tools"}],
                   "state_dirs": [")" +
                state + R"("],
                   "hide": ["/home"],
                   "network": "host",
                   "limits": {"memory_max_bytes": 1073741824, "memory_swap_max_bytes": 0,
                              "pids_max": 64, "cpu_max_percent": 150},
                   "rlimits": {"core_bytes": 0, "nofile": 1024, "stack_bytes": 8388608})");
  RequestedLimits lower;
  lower.pids_max = 32;
  auto e = Tighten(*p, lower);
  ASSERT_TRUE(e.has_value());
  auto r = BuildSpawnRequest(*e, Launch(), host_);
  ASSERT_TRUE(r.has_value()) << r.error().what;
  ASSERT_EQ(r->binds.size(), 3u);
  EXPECT_EQ(r->binds[0].source, opt);
  EXPECT_EQ(r->binds[0].target, "/opt/tools");
  EXPECT_EQ(r->binds[0].mode, sandbox::BindMode::kReadOnly);
  EXPECT_EQ(r->binds[1].target, state);
  EXPECT_EQ(r->binds[1].mode, sandbox::BindMode::kReadOnly);  // no home: read-only
  EXPECT_EQ(r->binds[2].target, ws_ + "/proj");               // the workspace comes last
  EXPECT_FALSE(r->home.has_value());
  EXPECT_EQ(r->hide,
            (std::vector<std::string>{"/etc/monkeyproof", "/var/lib/monkeyproof/state",
                                      "/run/monkeyproof", "/run/credentials", "/home", ws_}));
  EXPECT_EQ(r->network, sandbox::NetworkMode::kHost);
  EXPECT_EQ(r->limits.memory_max_bytes, 1ull << 30);
  EXPECT_EQ(r->limits.pids_max, 32u);
  EXPECT_EQ(r->limits.cpu_max, "150000 100000");
  ASSERT_EQ(r->rlimits.size(), 3u);
  EXPECT_EQ(r->rlimits[0].resource, RLIMIT_CORE);
  EXPECT_EQ(r->rlimits[0].soft, 0u);
  EXPECT_EQ(r->rlimits[1].resource, RLIMIT_NOFILE);
  EXPECT_EQ(r->rlimits[1].hard, 1024u);
  EXPECT_EQ(r->rlimits[2].resource, RLIMIT_STACK);
  EXPECT_EQ(r->rlimits[2].soft, 8u << 20);
}

TEST_F(BuildSpawnRequestTest, RunAsIdsAreResolvedAndRootRefused) {
  auto grouped = MustParse(R"({"description": "d", "type": "exec",
                               "run_as": {"user": "agent", "group": "agents"},
                               "workspace_roots": [")" +
                           ws_ + "\"]}");
  auto r = Build(*grouped, Launch());
  ASSERT_TRUE(r.has_value()) << r.error().what;
  EXPECT_EQ(r->uid, 1234u);
  EXPECT_EQ(r->gid, 3456u);

  auto unknown = Load("", "exec", "ghost");
  EXPECT_EQ(Build(*unknown, Launch()).error().code, ErrorCode::kHostSetup);
  EXPECT_EQ(Build(*unknown, Launch()).error().what,
            "policy \"t\" cannot run on this host yet: the user \"ghost\" (run_as.user) does "
            "not exist: create it with `useradd --system --user-group --no-create-home "
            "--home-dir /nonexistent --shell /usr/sbin/nologin ghost` (the package creates "
            "monkeyproof-session) (docs/policies.md, \"Installing the agents and their "
            "credentials\")");

  // A uid-0 account under another name is caught when the ids are known.
  auto toor = Load("", "exec", "toor");
  EXPECT_EQ(Build(*toor, Launch()).error().what,
            "policy \"t\": run_as \"toor\" resolves to uid 0 gid 0; id 0 is refused unless "
            "run_as.allow_root is true");
  auto allowed = MustParse(R"({"description": "d", "type": "exec",
                               "run_as": {"user": "toor", "allow_root": true},
                               "workspace_roots": [")" +
                           ws_ + "\"]}");
  auto root = Build(*allowed, Launch());
  ASSERT_TRUE(root.has_value()) << root.error().what;
  EXPECT_TRUE(root->allow_root);
}

TEST_F(BuildSpawnRequestTest, BadTasksAndCwds) {
  auto p = Load("");
  EXPECT_EQ(Build(*p, Launch("")).error().what, "task is empty");
  EXPECT_EQ(Build(*p, Launch("")).error().field, "/task");
  // Long tasks: spawn_task_test.cc.
  EXPECT_EQ(Build(*p, Launch(std::string(2000000, 'x'))).error().code, ErrorCode::kTooLarge);
  SessionLaunch l = Launch();
  l.cwd = "/";
  EXPECT_EQ(Build(*p, l).error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(Build(*p, l).error().field, "/cwd");
}

TEST(SystemSpawnHostTest, LooksUpTheRealUserDatabase) {
  SpawnHost host = SystemSpawnHost();
  auto root = host.lookup_user("root");
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(host.lookup_group("root"), std::optional<gid_t>(0));
  auto nobody = host.lookup_user("nobody");
  ASSERT_TRUE(nobody.has_value());
  EXPECT_NE(nobody->uid, 0u);
  EXPECT_FALSE(host.lookup_user("mp-no-such-user-x").has_value());
  EXPECT_EQ(host.credentials_dir, "/etc/monkeyproof/credentials");
  EXPECT_EQ(host.credentials_owner, 0u);
}

// ---------------------------------------------------------------------------------------
// The repository's own policies and their documentation.

TEST(RepoPoliciesTest, EveryShippedPolicyLoads) {
  auto set = PolicySet::Load(MP_REPO_POLICIES_DIR);
  ASSERT_TRUE(set.has_value()) << set.error().what;
  ASSERT_NE(set->Find("exec"), nullptr);
  const Policy& exec = *set->Find("exec");
  EXPECT_EQ(exec.run_as.user, "nobody");
  EXPECT_EQ(exec.network, sandbox::NetworkMode::kNone);
  EXPECT_EQ(exec.limits.memory_max_bytes, 2ull << 30);
  EXPECT_EQ(exec.limits.pids_max, 512u);
  EXPECT_EQ(exec.deadlines.wall_seconds, 3600u);
  EXPECT_EQ(exec.deadlines.idle_seconds, 900u);
  EXPECT_TRUE(exec.env.pass.empty());
  // Every shipped policy throttles a flood rather than killing it (each file says why).
  for (const auto& [name, policy] : set->all()) {
    EXPECT_EQ(policy->output.on_flood, common::FloodAction::kThrottle) << name;
  }
}

// docs/policies.md must list every seccomp group with its help text and every always-hidden
// path, so that the documentation cannot drift from syscall_groups.cc and policy.h.
TEST(RepoPoliciesTest, DocumentationListsGroupsAndHiddenPaths) {
  std::ifstream in(MP_POLICIES_DOC);
  ASSERT_TRUE(in.good()) << MP_POLICIES_DOC;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  for (const sandbox::SyscallGroup& g : sandbox::SyscallGroups()) {
    EXPECT_NE(doc.find("| `" + std::string(g.name) + "` | " + std::string(g.help) + " |"),
              std::string::npos)
        << g.name;
  }
  for (std::string_view h : kAlwaysHiddenPaths) {
    EXPECT_NE(doc.find("`" + std::string(h) + "`"), std::string::npos) << h;
  }
}

// Env names follow common::IsEnvName, the rule the wire and the API check a request's env
// with: a name a request may send is one a policy may allow.
TEST(PolicyLoaderTest, EnvNamesUpTo256BytesAsOnTheWire) {
  const std::string longest(256, 'A');
  auto p = MustParse(Doc(R"("request_env": {"allow": [")" + longest + R"("]})"));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->request_env_allow, std::vector<std::string>{longest});
  const std::string too_long(257, 'A');
  EXPECT_EQ(
      Errors(Doc(R"("env": {"pass": [")" + too_long + R"("]})")),
      std::vector<std::string>{E("/env/pass/0: string of 257 bytes exceeds the limit of 256")});
}

// The limits' ranges are common::k*Range: the bounds themselves load, one past them does not.
TEST(PolicyLoaderTest, LimitRangesAtTheirBounds) {
  EXPECT_NE(MustParse(Doc(R"("limits": {"memory_max_bytes": 16777216, "pids_max": 4194304,
                                        "cpu_max_percent": 100000},
                          "deadlines": {"wall_seconds": 2592000, "idle_seconds": 0})")),
            nullptr);
  EXPECT_EQ(Errors(Doc(R"("limits": {"memory_max_bytes": 16777215, "pids_max": 7,
                                     "cpu_max_percent": 100001},
                       "deadlines": {"wall_seconds": 2592001})")),
            (std::vector<std::string>{
                E("/limits/memory_max_bytes: value 16777215 is out of range [16777216, "
                  "1152921504606846976]"),
                E("/limits/pids_max: value 7 is out of range [8, 4194304]"),
                E("/limits/cpu_max_percent: value 100001 is out of range [1, 100000]"),
                E("/deadlines/wall_seconds: value 2592001 is out of range [0, 2592000]")}));
}

// own_command_types: print and interactive only, once each, and only without a template.
TEST(PolicyLoaderTest, OwnCommandTypes) {
  auto p = MustParse(Doc(R"("own_command_types": ["interactive"])"));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->own_command_types, std::vector<SessionType>{SessionType::kInteractive});
  EXPECT_TRUE(MustParse(Doc())->own_command_types.empty());
  EXPECT_EQ(Errors(Doc(R"("own_command_types": ["exec", "shell", "print", "print"])")),
            (std::vector<std::string>{
                E("/own_command_types/0: \"exec\" sessions may always use a policy of their "
                  "type; list only print or interactive, and not the policy's own type"),
                E("/own_command_types/1: \"shell\" is not a session type (print, interactive)"),
                E("/own_command_types/3: \"print\" is listed twice")}));
  EXPECT_EQ(Errors(Doc(R"("command": ["make"], "own_command_types": ["print"])")),
            std::vector<std::string>{
                E("/own_command_types: needs an empty command: a policy with a command "
                  "template runs only that command")});
  EXPECT_EQ(Errors(Doc(R"("own_command_types": "print")")).size(), 1u);
}

}  // namespace
}  // namespace mp::supervisor
