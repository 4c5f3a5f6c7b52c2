// SupervisorConfig: monkeyproofd's settings from /etc/monkeyproof/monkeyproof.conf
// (`key = value` lines, `#` comments, read by common/kv_config), then the original server's
// environment variables as overrides (MAX_SESSIONS, SESSION_TTL_MS,
// INTERACTIVE_SESSION_TTL_MS). Unknown keys, repeated keys and bad values are errors naming
// the file, line and key. Supervisor only; plain data.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

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
};

// Reads `path` (a missing file is an error unless `optional`), then the environment.
Result<SupervisorConfig> LoadConfig(const std::string& path, bool optional);
// Parses config text; `name` labels errors.
Result<SupervisorConfig> ParseConfig(const std::string& name, const std::string& text);

}  // namespace mp::supervisor
