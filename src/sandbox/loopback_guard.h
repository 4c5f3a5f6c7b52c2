// The loopback guard: a cgroup BPF program, attached to the cgroup above every session leaf,
// that refuses connect() and sendmsg() from a socket in the host's network namespace to the
// host itself: a loopback address (127.0.0.0/8, 0.0.0.0/8, ::1, ::, and their IPv4-mapped
// forms) or any address the host answers for (every route of the local routing table: the
// interfaces' addresses, the rest of a prefix on lo, AnyIP ranges, broadcast, IPv6 anycast and
// multicast; and 255.255.255.255, 224.0.0.0/4 and ff00::/8, held in a BPF LPM trie the
// supervisor keeps current). So a session with
// "network": "host" reaches neither the host's loopback-only services nor a service of the
// host listening on all addresses (the API's listener among them), yet reaches other hosts.
// Port 53 stays reachable: a host whose resolver listens on loopback (systemd-resolved's
// 127.0.0.53, dnsmasq) still answers a host-network session's DNS. Sockets in another
// namespace (a session's own, "network": "none" or "allowlist") are never refused.
// Supervisor only; no libbpf: the instructions are written out in loopback_guard.cc and loaded
// with bpf(2). Kernel >= 5.14 (SO_NETNS_COOKIE; Debian 12 has 6.1).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include <linux/bpf.h>

#include "common/port_ranges.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::sandbox {

// The name the guard's programs carry in the kernel (bpf_prog_info.name, at most 15 bytes), by
// which a restarted supervisor finds and detaches the copies an earlier run attached.
inline constexpr char kLoopbackGuardName[] = "mp_loopback";

// The instructions of the guard for one hook. `ipv6`: the program reads user_ip6 (the
// INET6_CONNECT and UDP6_SENDMSG hooks), else user_ip4 (the verifier allows only the field of
// the hook's family). `host_netns_cookie`: the cookie of the namespace to guard.
// `host_addresses_map_fd`: the LPM trie (key HostPrefix) of what the host answers for, which
// the instructions reference by fd (BPF_PSEUDO_MAP_FD) until the kernel loads them. Pure.
std::vector<bpf_insn> BuildLoopbackGuardProgram(bool ipv6, uint64_t host_netns_cookie,
                                                int host_addresses_map_fd);

// The network namespace cookie of the caller (getsockopt SO_NETNS_COOKIE on a new socket).
Result<uint64_t> CurrentNetnsCookie();

// A prefix of addresses the host answers for, as the guard's map (an LPM trie) keys it: the
// layout of struct bpf_lpm_trie_key with 16 bytes of data, the prefix length in host order and
// the address in network order, IPv4 as ::ffff:a.b.c.d with 96 added to its length. The bits
// past the prefix are zero.
struct HostPrefix {
  uint32_t prefixlen = 0;
  std::array<uint8_t, 16> addr{};
  friend auto operator<=>(const HostPrefix&, const HostPrefix&) = default;
};
static_assert(sizeof(HostPrefix) == 20, "the LPM trie's key layout");

// `prefixlen` bits of `addr` (network order, 16 bytes) as a HostPrefix, the rest zeroed.
HostPrefix MakeHostPrefix(const std::array<uint8_t, 16>& addr, uint32_t prefixlen);

// Parses rtnetlink replies to an RTM_GETROUTE dump (`len` bytes of whole messages), appending
// to `out` the destination of every local route (RTN_LOCAL) of any table, and of every route
// of the local table (RT_TABLE_LOCAL) whose type is broadcast, anycast or multicast. True once
// NLMSG_DONE is seen. An NLMSG_ERROR reply, a truncated message or attribute, or a destination
// longer than its family allows is an error; a message marked NLM_F_DUMP_INTR (the routes
// changed during the dump) is an error with errnum EAGAIN. Pure.
Result<bool> ParseLocalRoutes(const uint8_t* buf, size_t len, std::vector<HostPrefix>* out);

// What the host answers for now: its local routing table and the local routes of its other
// tables, dumped over rtnetlink (again when a change interrupts a dump, up to 5 times), plus
// 255.255.255.255, 224.0.0.0/4 and ff00::/8 (multicast: a service of the host may have joined
// any group). Sorted, without duplicates.
Result<std::vector<HostPrefix>> HostPrefixes();

// The guard attached for the caller's network namespace, with the map of the host's addresses
// it consults. The attachment outlives this object (and the process); what this object adds
// is keeping the map current: an rtnetlink socket that becomes readable when an address or a
// route of the host comes or goes (change_fd), and Refresh to bring the map up to date.
class LoopbackGuard {
 public:
  // Opens the rtnetlink subscription to address and route changes (first, so no change is
  // missed), creates the map and fills it, loads the guard for INET4_CONNECT, INET6_CONNECT,
  // UDP4_SENDMSG and UDP6_SENDMSG, attaches it (BPF_F_ALLOW_MULTI) to the cgroup `cgroup_dirfd`,
  // then detaches every other program named kLoopbackGuardName there (an earlier run's): new first,
  // old after, so sessions that outlived a restart are never unguarded. Errors name the bpf(2)
  // command and the hook.
  static Result<std::unique_ptr<LoopbackGuard>> Attach(int cgroup_dirfd);

  // Readable (EPOLLIN) when the host's addresses or routes changed since the last Refresh.
  int change_fd() const { return netlink_.get(); }
  // Drains change_fd and rewrites the map to HostPrefixes(): adds before it deletes. Returns
  // how many prefixes the map holds. Cheap enough to call on every change notice. When it
  // fails (rtnetlink, bpf), the map fails closed: it gains ::/0 and ::ffff:0:0/96, so every
  // destination counts as the host's until a later Refresh succeeds and takes them out. The
  // caller retries (the supervisor's loop, on a timer).
  Result<size_t> Refresh();
  // Whether the map holds the fail-closed prefixes (the last Refresh failed).
  bool failed_closed() const { return failed_closed_; }
  // Adds the fail-closed prefixes (what a failed Refresh does); public for the VM test.
  Result<void> FailClosed();
  // Test hook of the privileged suite: the next `n` Refresh calls fail (after draining the
  // notices) as if rtnetlink had, so the supervisor's retry can be watched.
  void FailNextRefreshesForTest(int n) { test_failures_ = n; }

 private:
  LoopbackGuard(UniqueFd map, UniqueFd netlink)
      : map_(std::move(map)), netlink_(std::move(netlink)) {}
  Result<size_t> RefreshOnce();
  UniqueFd map_;
  UniqueFd netlink_;
  bool failed_closed_ = false;
  int test_failures_ = 0;
};

// The delay before retrying a failed Refresh: 1 s after the first failure, doubling up to
// kRefreshRetryMax. `previous`: the delay before this failure, 0 for the first. Pure.
inline constexpr std::chrono::milliseconds kRefreshRetryMax{30000};
std::chrono::milliseconds NextRefreshRetry(std::chrono::milliseconds previous);

// Detaches every program named kLoopbackGuardName from the cgroup (session_host_loopback =
// allow after a run with deny). Returns how many it detached.
Result<int> DetachLoopbackGuard(int cgroup_dirfd);

// --- The bind guard (session_host_bind = ephemeral): the other half of keeping host-network
// sessions away from the host's services. A session could otherwise bind a port a service of
// the host listens on while that service restarts (the API's 3200 during `systemctl restart
// monkeyproof-api`) and take its clients' requests and credentials. The guard refuses bind()
// in the host's network namespace to any port but 0 (the kernel picks one) and the ports of
// the ephemeral range that are not reserved, where services do not listen; sockets in another
// namespace are never refused. Attached to the same cgroup as the loopback guard, with
// BPF_F_ALLOW_MULTI.
inline constexpr char kBindGuardName[] = "mp_bind_guard";

using common::PortRange;

// The host's ephemeral port range, net.ipv4.ip_local_port_range (IPv6 shares it), read from
// `path` (a parameter for tests).
inline Result<PortRange> EphemeralPortRange(const char* path = common::kEphemeralPortRangePath) {
  return common::ReadEphemeralPortRange(path);
}

// What the bind guard lets a host-network session bind, as its map (a one-entry BPF array)
// holds it: the ephemeral range, less the ports of net.ipv4.ip_local_reserved_ports (inside
// the range, but the kernel keeps them for services). Port 0 is always allowed.
struct BindGuardRules {
  uint32_t low = 0;  // the range, host byte order
  uint32_t high = 0;
  std::array<uint8_t, 8192> reserved{};  // port p refused when bit p % 8 of byte p / 8 is set
  friend bool operator==(const BindGuardRules&, const BindGuardRules&) = default;
};
static_assert(sizeof(BindGuardRules) == 8200, "the bind guard map's value layout");

// `allowed` less `reserved`, as the map holds it. Pure.
BindGuardRules MakeBindGuardRules(PortRange allowed, const std::vector<PortRange>& reserved);
// How many ports `rules` reserves (all of them, inside the range or not). Pure.
size_t ReservedPortCount(const BindGuardRules& rules);
// The host's rules now: both sysctls read (common/port_ranges.h). Errors name the file.
Result<BindGuardRules> HostBindGuardRules(const char* range_path = common::kEphemeralPortRangePath,
                                          const char* reserved_path = common::kReservedPortsPath);

// The bind guard's instructions for INET4_BIND and INET6_BIND (it reads user_port only, which
// both hooks allow): in the namespace `host_netns_cookie`, a port that is not 0 is refused
// (bind() fails with EPERM) when it lies outside [low, high] of the map `rules_map_fd` (a
// one-entry array of BindGuardRules, referenced by fd until the kernel loads the program) or
// is reserved there; and every such bind is refused when the lookup finds nothing (fail
// closed). Pure.
std::vector<bpf_insn> BuildBindGuardProgram(uint64_t host_netns_cookie, int rules_map_fd);

// The bind guard attached for the caller's network namespace, with its map. The attachment
// outlives this object (and the process); what this object adds is changing the rules of the
// running program: the supervisor calls Update when the sysctls may have changed (SIGHUP,
// before a spawn), and a narrowed range or a new reserved port holds from the next bind on.
// Not thread-safe; the supervisor's loop thread.
class BindGuard {
 public:
  // Creates the map holding `rules`, loads and attaches the guard to the cgroup `cgroup_dirfd`,
  // then detaches an earlier run's copies (new first, old after). Errors name the bpf(2)
  // command and the hook.
  static Result<std::unique_ptr<BindGuard>> Attach(int cgroup_dirfd, const BindGuardRules& rules);
  // Writes `rules` into the map when they differ from what it holds; true when they did. The
  // kernel copies the value without a lock: a bind racing the update may be judged by a mix of
  // the old and the new rules, once.
  Result<bool> Update(const BindGuardRules& rules);
  const BindGuardRules& rules() const { return rules_; }

 private:
  BindGuard(UniqueFd map, const BindGuardRules& rules) : map_(std::move(map)), rules_(rules) {}
  UniqueFd map_;
  BindGuardRules rules_;
};

// Detaches every program named kBindGuardName (session_host_bind = any). Returns how many.
Result<int> DetachBindGuard(int cgroup_dirfd);

}  // namespace mp::sandbox
