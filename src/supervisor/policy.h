// Policies: the presets of policies/*.json (JSON with comments), validated once into immutable
// Policy objects, tightened per request, and turned into a sandbox::SpawnRequest.
// Supervisor side (monkeyproofd, and `monkeyproofd check-policy`). Loading reads files and
// compiles each seccomp profile once; the loader collects every problem as
// `FILE:JSON-POINTER: reason` (`FILE: reason` when no field is at fault) and rejects unknown
// fields. A loaded Policy is immutable and safe to share between threads; PolicySet is a value
// (Reload() returns a new one, the caller swaps). The field reference is docs/policies.md.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/limits.h"
#include "common/result.h"
#include "common/vocabulary.h"
#include "egress/allow_list.h"
#include "egress/handover.h"
#include "sandbox/child_plan.h"
#include "sandbox/seccomp.h"
#include "sandbox/spawn.h"

namespace mp::supervisor {

// Paths every session has covered by an empty directory (or /dev/null), in addition to the
// policy's `hide`: the daemon's configuration (monkeyproof.conf, tokens, policies, the
// credentials directory), its state (session records, transcripts), its control socket, and
// systemd credentials. Binds, workspace roots and state_dirs may not lie inside them (hidden
// paths are mounted last and would cover them).
inline constexpr std::array<std::string_view, 4> kAlwaysHiddenPaths = {
    "/etc/monkeyproof", "/var/lib/monkeyproof/state", "/run/monkeyproof", "/run/credentials"};

// Where env.secrets are read from: one root-owned file per credential name.
inline constexpr std::string_view kDefaultCredentialsDir = "/etc/monkeyproof/credentials";
// What a gateway endpoint's key_env holds in the session: not a key; the gateway replaces the
// header that carries it.
inline constexpr std::string_view kGatewayPlaceholderKey = "monkeyproof-gateway-placeholder";

// Built-in defaults of the optional fields (docs/policies.md lists them too).
inline constexpr uint64_t kDefaultMemoryMaxBytes = 2ull << 30;       // limits.memory_max_bytes
inline constexpr uint64_t kDefaultMemorySwapMaxBytes = 0;            // no swap
inline constexpr uint64_t kDefaultPidsMax = 512;                     // limits.pids_max
inline constexpr uint64_t kDefaultPtyMax = 32;                       // limits.pty_max
inline constexpr uint64_t kDefaultWallSeconds = 3600;                // deadlines.wall_seconds
inline constexpr uint64_t kDefaultIdleSeconds = 900;                 // deadlines.idle_seconds
inline constexpr uint64_t kDefaultRingBytes = 1ull << 20;            // output.ring_bytes
inline constexpr uint64_t kDefaultTranscriptMaxBytes = 64ull << 20;  // output.transcript_max_bytes
inline constexpr uint64_t kDefaultMaxRateBytesPerSecond = 1ull << 20;
inline constexpr uint64_t kDefaultMaxRateWindowSeconds = 10;
// cgroup cpu.max period that limits.cpu_max_percent is applied with (microseconds).
inline constexpr uint64_t kCpuPeriodMicros = 100000;

// Errors that a request caused (Tighten, ResolveWorkspace, BuildSpawnRequest) carry
// ErrorCode::kPolicyViolation or kBadRequest in Error::code; the host's own failures kInternal.

// "exec", "print", "interactive" (common/vocabulary.h).
using SessionType = common::SessionType;

struct RunAs {
  std::string user;         // looked up in the user database when a session starts
  std::string group;        // empty: the user's primary group
  bool allow_root = false;  // uid or gid 0 is refused unless true
};

// The account that owns what a session writes in its workspace and state dirs on disk
// (sessions with their own uid see those files through an idmapped mount). Empty user: the
// policy's run_as user and group, as for sessions without their own uid.
struct WorkspaceOwner {
  std::string user;   // empty: run_as.user (and then run_as.group)
  std::string group;  // empty: the user's primary group
};

struct PolicyMount {
  std::string source;  // absolute host path
  std::string target;  // absolute path in the sandbox
  sandbox::BindMode mode = sandbox::BindMode::kReadOnly;
};

// setrlimit values (soft = hard); nullopt: sandbox::DefaultRlimits() for core, nofile, nproc
// and fsize, otherwise monkeyproofd's own limit.
struct PolicyRlimits {
  std::optional<uint64_t> core_bytes;   // RLIMIT_CORE
  std::optional<uint64_t> cpu_seconds;  // RLIMIT_CPU
  std::optional<uint64_t> fsize_bytes;  // RLIMIT_FSIZE
  std::optional<uint64_t> nofile;       // RLIMIT_NOFILE, descriptors per process
  std::optional<uint64_t> nproc;        // RLIMIT_NPROC, per real uid on the whole host
  std::optional<uint64_t> stack_bytes;  // RLIMIT_STACK
  std::optional<uint64_t> as_bytes;     // RLIMIT_AS, address space
};

// cgroup v2 limits of the session's leaf.
struct PolicyLimits {
  uint64_t memory_max_bytes = kDefaultMemoryMaxBytes;           // memory.max
  uint64_t memory_swap_max_bytes = kDefaultMemorySwapMaxBytes;  // memory.swap.max
  uint64_t pids_max = kDefaultPidsMax;                          // pids.max
  // max= of the session's private devpts: terminals the session may open at once. Every
  // devpts instance but the host's draws on kernel.pty.max minus kernel.pty.reserve.
  uint64_t pty_max = kDefaultPtyMax;
  // cpu.max as a percentage of one CPU (250 = two and a half CPUs); nullopt: no cap.
  std::optional<uint64_t> cpu_max_percent;
};

// Watchdog deadlines in seconds; 0 = none.
struct PolicyDeadlines {
  uint64_t wall_seconds = kDefaultWallSeconds;  // from start to kill (timeout_wall)
  uint64_t idle_seconds = kDefaultIdleSeconds;  // without output or input (timeout_idle)
};

struct PolicyOutput {
  uint64_t ring_bytes = kDefaultRingBytes;                     // in-memory tail per session
  uint64_t transcript_max_bytes = kDefaultTranscriptMaxBytes;  // on-disk cap; the rest is a gap
  // Output-rate ceiling, 0 = none: bytes per second, and the window (seconds) that sets the
  // burst (rate * window). Over it, `on_flood`: kThrottle reads the output no faster than
  // the rate (the writer blocks, nothing is lost); kKill ends the session (output_flood) once
  // more than rate * window bytes arrive within one window. See WatchdogLimits.
  uint64_t max_rate_bytes_per_second = kDefaultMaxRateBytesPerSecond;
  uint64_t max_rate_window_seconds = kDefaultMaxRateWindowSeconds;
  common::FloodAction on_flood = common::FloodAction::kThrottle;
};

// home.keep: what becomes of the writable home a session gets over `home.dir`.
//   kSession: a private layer per session over the read-only state dir, discarded at its end;
//   kShared:  the state dir itself, read-write and shared by every session of the policy (the
//             old behaviour: one session's plant runs in the next; only for trusted callers).
enum class HomeKeep : uint8_t { kSession, kShared };
inline constexpr std::array<std::string_view, 2> kHomeKeepNames = {"session", "shared"};
// home.max_bytes: default and range of the session's writable layer (a tmpfs: memory).
inline constexpr uint64_t kDefaultHomeMaxBytes = 1ull << 30;
inline constexpr common::UintRange kHomeMaxBytesRange{1ull << 20, 64ull << 30};

struct PolicyHome {
  std::string dir;  // one of state_dirs, seen read-only below the private layer; empty: none
  HomeKeep keep = HomeKeep::kSession;
  uint64_t max_bytes = kDefaultHomeMaxBytes;
};

struct PolicyEnv {
  std::vector<std::string> pass;               // names copied from monkeyproofd's environment
  std::map<std::string, std::string> set;      // fixed values
  std::map<std::string, std::string> secrets;  // NAME -> credential file name, read per spawn
  // The same, except that a credential file that does not exist leaves NAME unset (an agent
  // that may instead use a login kept in its state dir).
  std::map<std::string, std::string> optional_secrets;
};

// One model endpoint of the credential gateway (`network.gateway`, issue 14). The session
// sees `base_url_env` = http://127.0.0.1:PORT (sandbox::kEgressEndpointPortBase + its index) and,
// when named, `key_env` = kGatewayPlaceholderKey; monkeyproof-egress sends each request on to
// `upstream` over TLS with `header: prefix + the secret`. The secret is read by the supervisor
// from its credentials_dir at spawn and never enters the session.
struct GatewayEndpoint {
  std::string base_url_env;
  std::string key_env;   // "" when the agent needs no key variable
  std::string upstream;  // "https://api.anthropic.com" (egress::ParseUpstreamUrl)
  std::string header;    // "x-api-key", "authorization", ...
  std::string prefix;    // before the secret in that header ("Bearer ")
  std::string secret;    // a file name in credentials_dir
  friend bool operator==(const GatewayEndpoint&, const GatewayEndpoint&) = default;
};

struct Policy {
  std::string name;  // file stem: ^[a-z0-9][a-z0-9-]{0,63}$
  std::string file;  // path it was loaded from (for messages)
  std::string description;
  SessionType type = SessionType::kExec;
  std::vector<std::string> command;  // template; the task is appended as the last argument
  // Session types other than `type` that a request may start under this policy with its own
  // command (print, interactive); only for policies without a command template.
  std::vector<SessionType> own_command_types;
  bool bypasses_agent_permissions = false;
  RunAs run_as;
  WorkspaceOwner workspace_owner;
  std::vector<std::string> workspace_roots;  // absolute; the cwd must resolve inside one
  std::string default_workspace;             // empty: a request must name its cwd
  std::vector<PolicyMount> mounts;
  std::vector<std::string> state_dirs;  // bound read-only at the same path (home.dir: see home)
  PolicyHome home;
  std::vector<std::string> hide;  // the policy's own; see HiddenPaths()
  sandbox::NetworkMode network = sandbox::NetworkMode::kNone;
  // `network.allow`: what a kAllowlist session may reach (empty for the other modes, and a
  // kAllowlist policy may leave it empty: DNS and every connection refused).
  egress::AllowList network_allow;
  // `network.gateway`: the credential gateway's model endpoints (kAllowlist only).
  std::vector<GatewayEndpoint> gateway;
  // DefaultDenyProfile() with the policy's deny list appended and its kill list and switches.
  sandbox::SeccompProfile seccomp;
  std::shared_ptr<const sandbox::SeccompProgram> seccomp_program;  // `seccomp`, compiled
  PolicyRlimits rlimits;
  PolicyLimits limits;
  PolicyDeadlines deadlines;
  PolicyOutput output;
  PolicyEnv env;
  std::vector<std::string> request_env_allow;  // names a request's env may set

  // kAlwaysHiddenPaths followed by `hide`.
  [[nodiscard]] std::vector<std::string> HiddenPaths() const;
};

// The outcome of loading one file: a policy, or every problem found (never both).
struct PolicyLoad {
  std::shared_ptr<const Policy> policy;
  std::vector<std::string> errors;  // "FILE:POINTER: reason", in the order found
};

// Validates `text` as the policy file `file` (the name is its stem; nothing is read).
PolicyLoad ParsePolicy(std::string_view file, std::string_view text);
struct PolicyLoadOptions {
  // Refuse policy files and a directory that are not owned by root or that group or others
  // may write. Meant for the installed daemon (not --dev, which loads the repo's policies/)
  // and for `check-policy --require-root-owned`.
  bool require_root_owned = false;
};

// Reads `path` (a regular file of at most 1 MiB) and parses it.
PolicyLoad LoadPolicyFile(const std::string& path, PolicyLoadOptions options = {});

// Every *.json of one directory, loaded all-or-nothing. Other files are ignored.
class PolicySet {
 public:
  // Fails with every problem of every file, one per line of Error::what, when any file is
  // invalid, the directory cannot be read, or there is no valid exec.json (the default of
  // exec sessions, which must have type exec).
  static Result<PolicySet> Load(const std::string& dir, PolicyLoadOptions options = {});
  // Loads the same directory again. On error the caller keeps using this set.
  [[nodiscard]] Result<PolicySet> Reload() const { return Load(dir_, options_); }

  // nullptr when there is no such policy.
  [[nodiscard]] std::shared_ptr<const Policy> Find(std::string_view name) const;
  [[nodiscard]] const std::map<std::string, std::shared_ptr<const Policy>, std::less<>>& all()
      const {
    return policies_;
  }
  [[nodiscard]] const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  PolicyLoadOptions options_;
  std::map<std::string, std::shared_ptr<const Policy>, std::less<>> policies_;
};

// What a request may ask for; every field lowers the policy's value or is absent.
using RequestedLimits = common::RequestedLimits;

// A policy as one session gets it: a copy whose limits and deadlines are the tightened ones and
// whose `type` is the session's (one of own_command_types when the request brought its own
// command). Holds the compiled seccomp program (shared), so it may outlive a PolicySet reload.
struct EffectivePolicy {
  Policy policy;
};

// Lowers limits and deadlines. A value above the policy's (or 0 = none where the policy has
// a deadline) fails with policy_violation naming the field and both values; a value outside
// the field's range fails with bad_request.
Result<EffectivePolicy> Tighten(const Policy& policy, const RequestedLimits& requested);

// The directory a request's cwd names, without symlinks: strictly inside one of workspace_roots
// (a root itself is refused) and outside every hidden path. An absolute cwd must literally start
// with a root and is opened beneath that root's descriptor (openat2 RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS: no `..` or symlink may leave the root, nothing outside it is looked
// at); an empty cwd means default_workspace, a relative one is opened beneath it. Every refusal
// of a request's cwd is one bad_request with field "/cwd" and the same sentence whether the
// directory is missing, not a directory or outside, so the answer reveals nothing about paths
// the session may not use. A missing or misplaced default workspace without a cwd is the
// host's to fix (host_setup).
//
// `within` (a spawn's cwd_within: a scoped token's workspaces) narrows that further: when not
// empty the cwd must be one of those directories or below one. Each is opened beneath the
// root it lies in with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (a workspace with a symlink in
// its path is never usable), and the cwd's remainder beneath that descriptor with
// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, so no symlink or `..` below it reaches a sibling.
// An empty cwd is then the first of them, a relative one is below the default workspace as
// ever. Every refusal is one policy_violation with field "/cwd" and the same sentence.
Result<std::string> ResolveWorkspace(const Policy& policy, const std::string& cwd,
                                     const std::vector<std::string>& within = {});

// What the request contributes to a spawn.
struct SessionLaunch {
  std::string task;  // appended as the last argument (exec default: /bin/sh -lc TASK)
  std::string cwd;   // as requested; empty = default_workspace, relative = below it
  // The request's command and args, only for policies without a command template. For an
  // exec session a command without args runs `COMMAND -lc TASK`, args without a command
  // `/bin/sh ARGS... TASK` (the original server's rules); print and interactive sessions run
  // `COMMAND ARGS... TASK` and need a command.
  std::optional<std::string> command;
  std::optional<std::vector<std::string>> args;
  std::map<std::string, std::string> env;  // names must be in request_env.allow
  // The directories the cwd must be at or below (wire::SpawnRequest::cwd_within); empty: any.
  std::vector<std::string> cwd_within;
};

struct UserIds {
  uid_t uid;
  gid_t gid;  // primary group
};

// Host facts BuildSpawnRequest consults; the defaults read the real system, tests inject.
struct SpawnHost {
  std::string credentials_dir = std::string(kDefaultCredentialsDir);
  uid_t credentials_owner = 0;  // the directory and every file must belong to this uid
  std::function<std::optional<UserIds>(const std::string& user)> lookup_user;  // getpwnam_r
  std::function<std::optional<gid_t>(const std::string& group)> lookup_group;  // getgrnam_r
  std::function<std::optional<std::string>(const std::string& name)> getenv;   // ::getenv
  // True for an executable regular file (a preset's command, host_setup.h); unset: the
  // command is not checked before the spawn.
  std::function<bool(const std::string& path)> is_executable;
  // The host's resolver configuration: where it resolves outside the allowlisted view (into
  // /run), sessions on the host's network get that file bound read-only.
  std::string resolv_conf = "/etc/resolv.conf";
  // Every session's oom_score_adj (monkeyproof.conf session_oom_score_adj); empty: inherit.
  std::optional<int> session_oom_score_adj = 500;
};
// getpwnam_r and getgrnam_r go through NSS on every call (nsswitch.conf, /etc/passwd or
// /etc/group, with `systemd` listed a round trip to systemd-userdbd for names the files lack):
// milliseconds on a loaded host, on the supervisor's loop, twice per spawn. SystemSpawnHost
// keeps a name found for kNameCacheTtl; a name not found is asked again every time, so a user
// or group created for a policy works at once.
inline constexpr std::chrono::seconds kNameCacheTtl{10};
SpawnHost SystemSpawnHost();
// `host` with lookup_user and lookup_group answered from a cache of found names kept for `ttl`
// (0: no cache). Thread-safe; the copies of the returned host share the cache.
SpawnHost WithNameCache(SpawnHost host, std::chrono::steady_clock::duration ttl);

// Runs `r` (built by BuildSpawnRequest for `policy`) as the session's own ids `id` (uid and
// gid; session_ids.h) and mounts its workspace and state dirs idmapped, so that the
// workspace owner's files are the session's and what it writes stays the owner's
// (workspace_owner, default run_as). A policy whose run_as resolves to uid 0 keeps it.
Result<void> UseSessionIds(const Policy& policy, const SpawnHost& host, uint32_t id,
                           sandbox::SpawnRequest* r);

// Builds the sandbox request: argv (template, or the request's command and args as described
// at SessionLaunch, or /bin/sh -lc; then the task, which goes to a file the shell sources when
// it is longer than one execve argument, or is too_large: PlaceTask in spawn_request.cc), env
// (pass, set, secrets, then the request's allowed names, which override pass and set), binds
// (mounts, state_dirs, then the workspace read-write), hidden paths, cgroup limits, rlimits,
// network, stdio (a PTY for interactive), run-as ids, and the seccomp program. The returned
// request points into `effective` (seccomp): keep it alive until Spawn() returns. Secrets are
// read here; their values appear in no error.
// What a valid policy does that an operator should know is risky, each "FILE:POINTER: warning:
// ...": an agent preset (bypasses_agent_permissions) on the host's network, or holding a key in
// its environment. `monkeyproofd check-policy` prints them; loading is not refused.
std::vector<std::string> PolicyWarnings(const Policy& policy);

// What a session's base_url_env says for gateway endpoint `index`: "http://127.0.0.1:3129".
std::string GatewayBaseUrl(size_t index);
// The credential gateway's endpoints (`gateway`, a policy's or an adopted session's) with
// their secrets read from host.credentials_dir under the checks of env.secrets, as the egress
// handover carries them; `where` prefixes errors. The values appear in no error.
Result<std::vector<egress::HandoverEndpoint>> ReadGatewayEndpoints(
    const std::vector<GatewayEndpoint>& gateway, const SpawnHost& host, const std::string& where);

Result<sandbox::SpawnRequest> BuildSpawnRequest(const EffectivePolicy& effective,
                                                const SessionLaunch& launch, const SpawnHost& host);

}  // namespace mp::supervisor
