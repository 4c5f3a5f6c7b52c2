// The vocabulary both daemons, the sandbox and the CLI share: session types, network modes,
// end reasons and the limits a request may lower, each defined once with its wire strings
// (docs/protocol.md; the same strings appear in policy files and the HTTP API). mp::wire,
// mp::sandbox and mp::supervisor name these types through aliases. Data only: no syscalls,
// thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mp::common {

// Each enum's strings are indexed by its values, in declaration order.
enum class SessionType { kExec, kPrint, kInteractive };
inline constexpr std::array<std::string_view, 3> kSessionTypeNames = {"exec", "print",
                                                                      "interactive"};

// A policy's `network` mode. kNone: the session gets its own network namespace with only
// loopback up; kHost: it shares the host's network (the dangerous mode, spelled out in the
// policy); kAllowlist: its own namespace whose TCP and DNS reach only the names and addresses
// the policy's `allow` list names, through monkeyproof-egress (issue 14).
enum class NetworkMode { kNone, kHost, kAllowlist };
inline constexpr std::array<std::string_view, 3> kNetworkModeNames = {"none", "host", "allowlist"};

// A policy's `output.on_flood`: what output over the rate ceiling does. kThrottle: the
// supervisor stops reading the session's output until the rate allows more (the writer
// blocks as on a slow terminal; nothing is lost); kKill: the session ends (output_flood).
enum class FloodAction { kThrottle, kKill };
inline constexpr std::array<std::string_view, 2> kFloodActionNames = {"throttle", "kill"};

// Why a session ended.
enum class EndReason {
  kExit,               // the command exited (or was killed by a signal it did not ask for)
  kKilledByRequest,    // a kill request
  kTimeoutWall,        // deadlines.wall_seconds passed
  kTimeoutIdle,        // deadlines.idle_seconds without output or input
  kOom,                // the cgroup's memory.max was hit
  kOutputFlood,        // the output-rate ceiling was exceeded
  kPidsLimit,          // the cgroup's pids.max was hit
  kSpawnError,         // the sandbox could not be set up (the failed step is in the detail)
  kSupervisorRestart,  // monkeyproofd restarted while the session ran
};
inline constexpr std::array<std::string_view, 9> kEndReasonNames = {
    "exit",         "killed_by_request", "timeout_wall", "timeout_idle",      "oom",
    "output_flood", "pids_limit",        "spawn_error",  "supervisor_restart"};

std::string_view ToString(SessionType v);
std::string_view ToString(NetworkMode v);
std::string_view ToString(FloodAction v);
std::string_view ToString(EndReason v);

// The limits a spawn request may ask for; each lowers the policy's value or is absent
// (docs/policies.md, "The tightening rule"). The wire and the API check the ranges of
// common/limits.h; the tighten-only rule is the supervisor's (Tighten in
// src/supervisor/policy.h).
struct RequestedLimits {
  std::optional<uint64_t> memory_max_bytes;       // cgroup memory.max, bytes
  std::optional<uint64_t> memory_swap_max_bytes;  // cgroup memory.swap.max, bytes
  std::optional<uint64_t> pids_max;               // cgroup pids.max, tasks
  std::optional<uint64_t> cpu_max_percent;        // cgroup cpu.max, percent of one CPU
  std::optional<uint64_t> wall_seconds;           // deadline from start, seconds; 0 = none
  std::optional<uint64_t> idle_seconds;  // deadline without output or input, seconds; 0 = none
  friend bool operator==(const RequestedLimits&, const RequestedLimits&) = default;
};

}  // namespace mp::common
