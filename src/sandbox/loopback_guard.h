// The loopback guard: a cgroup BPF program, attached to the cgroup above every session leaf,
// that refuses connect() and sendmsg() from a socket in the host's network namespace to a
// loopback address (127.0.0.0/8, 0.0.0.0/8, ::1, ::, and their IPv4-mapped forms), so that a
// session with "network": "host" cannot reach the host's loopback-only services (the API's
// listener among them). Port 53 stays reachable: a host whose resolver listens on loopback
// (systemd-resolved's 127.0.0.53, dnsmasq) still answers a host-network session's DNS.
// Sockets in another namespace (a session's own, "network": "none") are never refused.
// Supervisor only, once at start; no libbpf: the instructions are written out in
// loopback_guard.cc and loaded with bpf(2). Kernel >= 5.14 (SO_NETNS_COOKIE; Debian 12 has 6.1).
#pragma once

#include <cstdint>
#include <vector>

#include <linux/bpf.h>

#include "common/result.h"

namespace mp::sandbox {

// The name the guard's programs carry in the kernel (bpf_prog_info.name, at most 15 bytes), by
// which a restarted supervisor finds and detaches the copies an earlier run attached.
inline constexpr char kLoopbackGuardName[] = "mp_loopback";

// The instructions of the guard for one hook. `ipv6`: the program reads user_ip6 (the
// INET6_CONNECT and UDP6_SENDMSG hooks), else user_ip4 (the verifier allows only the field of
// the hook's family). `host_netns_cookie`: the cookie of the namespace to guard. Pure.
std::vector<bpf_insn> BuildLoopbackGuardProgram(bool ipv6, uint64_t host_netns_cookie);

// The network namespace cookie of the caller (getsockopt SO_NETNS_COOKIE on a new socket).
Result<uint64_t> CurrentNetnsCookie();

// Loads the guard for the caller's namespace, attaches it (BPF_F_ALLOW_MULTI) to the cgroup
// `cgroup_dirfd` for INET4_CONNECT, INET6_CONNECT, UDP4_SENDMSG and UDP6_SENDMSG, then
// detaches every other program named kLoopbackGuardName there (an earlier run's): new first,
// old after, so sessions that outlived a restart are never unguarded. The attachment outlives
// the caller. Errors name the bpf(2) command and the hook.
Result<void> AttachLoopbackGuard(int cgroup_dirfd);

// Detaches every program named kLoopbackGuardName from the cgroup (session_host_loopback =
// allow after a run with deny). Returns how many it detached.
Result<int> DetachLoopbackGuard(int cgroup_dirfd);

}  // namespace mp::sandbox
