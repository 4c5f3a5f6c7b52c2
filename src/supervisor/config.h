// SupervisorConfig: monkeyproofd's settings from /etc/monkeyproof/monkeyproof.conf
// (`key = value` lines, `#` comments, read by common/kv_config), then the original server's
// environment variables as overrides (MAX_SESSIONS, SESSION_TTL_MS,
// INTERACTIVE_SESSION_TTL_MS). Unknown keys, repeated keys and bad values are errors naming
// the file, line and key. Supervisor only; plain data.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "supervisor/session_ids.h"

namespace mp::supervisor {

inline constexpr char kDefaultConfigPath[] = "/etc/monkeyproof/monkeyproof.conf";

// fd_store: whether running sessions outlive a restart of the supervisor through systemd's
// file-descriptor store. kAuto: when systemd runs the daemon (NOTIFY_SOCKET set) and not in
// --dev mode; kOff: never (a stop or restart ends every session as supervisor_restart).
enum class FdStoreMode { kAuto, kOff };

// session_host_loopback: whether sessions in the host's network namespace ("network": "host")
// reach the host's loopback addresses. kDeny: a cgroup BPF program (sandbox/loopback_guard.h)
// refuses their connect()/sendmsg() to 127.0.0.0/8, ::1 and the like (port 53 excepted), and
// the supervisor refuses to start when the kernel cannot load it; kAllow: no guard (any guard
// an earlier run attached is detached).
enum class HostLoopbackMode { kDeny, kAllow };
// session_host_bind: which ports sessions in the host's network namespace may bind. kEphemeral:
// a cgroup BPF program (sandbox/loopback_guard.h, the bind guard) refuses bind() to any port
// but 0 and those of the host's ephemeral range (net.ipv4.ip_local_port_range, read at start),
// so a session cannot take the port of a host service that restarts (the API's); the supervisor
// refuses to start when the kernel cannot load it. kAny: no guard.
enum class HostBindMode { kEphemeral, kAny };
// sessions_memory_max: the cap on every session's memory together, as a share of the host's
// RAM or in bytes; neither is "max" (no cap).
struct SessionsMemoryMax {
  std::optional<uint64_t> percent;  // 1..100 of MemTotal
  std::optional<uint64_t> bytes;
  // The cap on a host with `mem_total` bytes of RAM (MemTotal); empty: none.
  [[nodiscard]] std::optional<uint64_t> Bytes(uint64_t mem_total) const;
  // As configured: "75%", "8G", "max".
  [[nodiscard]] std::string Text() const;
};

struct SupervisorConfig {
  std::string socket_path = "/run/monkeyproof/control.sock";  // control socket
  std::string api_user = "monkeyproof-api";                   // the only peer allowed besides root
  std::string state_dir = "/var/lib/monkeyproof/state";       // records and transcripts
  std::string policies_dir = "/etc/monkeyproof/policies";     // *.json presets
  std::string credentials_dir = "/etc/monkeyproof/credentials";  // secrets for env.secrets
  // Delegated cgroup for session leaves; "auto": the cgroup of monkeyproof-sessions.service
  // beside the daemon's unit while that unit runs (the package's layout: sessions outlive a
  // restart of monkeyproofd.service), else the supervisor's own cgroup (systemd
  // Delegate=yes), the daemon moving itself into "<own>/supervisor".
  std::string cgroup_root = "auto";
  std::string audit_log = "/var/log/monkeyproof/audit.log";  // "" = stderr
  uint64_t max_sessions = 50;                                // running sessions (MAX_SESSIONS)
  uint64_t max_ended_sessions = 500;                         // ended records kept
  uint64_t max_ended_output_bytes = 8ull << 30;   // their transcripts, bytes (K/M/G allowed)
  uint64_t session_ttl_ms = 3600000;              // ended exec/print kept (SESSION_TTL_MS)
  uint64_t interactive_session_ttl_ms = 7200000;  // (INTERACTIVE_SESSION_TTL_MS)
  uint64_t kill_grace_ms = 3000;                  // SIGTERM → cgroup.kill
  uint64_t spawn_timeout_ms = 30000;              // clone → the command runs, else spawn_error
  FdStoreMode fd_store = FdStoreMode::kAuto;      // "auto" | "off"
  HostLoopbackMode session_host_loopback = HostLoopbackMode::kDeny;  // "deny" | "allow"
  HostBindMode session_host_bind = HostBindMode::kEphemeral;         // "ephemeral" | "any"
  // monkeyproof-egress's handover socket: where "allowlist" sessions' listeners go.
  std::string egress_socket = "/run/monkeyproof-egress/handover.sock";
  // Every session process's oom_score_adj (0..1000): under host memory pressure the kernel
  // kills a session (whole: memory.oom.group) before a host service at 0. The supervisor keeps
  // its own (the unit's OOMScoreAdjust=-500).
  uint64_t session_oom_score_adj = 500;
  // memory.max of the sessions' parent cgroup: default 75 % of MemTotal.
  SessionsMemoryMax sessions_memory_max{.percent = 75, .bytes = std::nullopt};
  // session_uid_range: "FIRST-LAST" gives every live session a uid and gid of its own from
  // it (session_ids.h; checked at start against the user, group and subordinate-id
  // databases); "off" (the default) runs sessions as their policy's run_as user.
  std::optional<IdRange> session_uid_range;
};

// The smallest aggregate cap accepted in bytes: below it no session would start.
inline constexpr uint64_t kMinSessionsMemoryMaxBytes = 64ull << 20;

// Reads `path` (a missing file is an error unless `optional`), then the environment.
Result<SupervisorConfig> LoadConfig(const std::string& path, bool optional);
// Parses config text; `name` labels errors.
Result<SupervisorConfig> ParseConfig(const std::string& name, const std::string& text);

}  // namespace mp::supervisor
