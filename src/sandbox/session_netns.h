// The network namespace of an "allowlist" session (issue 14) and the listening sockets inside
// it that monkeyproof-egress serves. The supervisor creates both: the namespace once per
// session (loopback up, and a local route for 0.0.0.0/0 so that every IPv4 address is local
// and a TCP connect to any address lands on the namespace's own listeners), the listeners
// each time it hands them to the egress daemon (a socket belongs to the namespace it was
// created in and keeps working from a process in another one). Supervisor side, as root;
// each call runs its namespace work on a short-lived helper thread (unshare and setns of a
// network namespace change only the calling thread), so the caller's own namespace never
// changes. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace mp::sandbox {

// Where the session finds the gateway, inside its namespace.
inline constexpr char kEgressProxyAddress[] = "127.0.0.1";
inline constexpr uint16_t kEgressProxyPort = 3128;  // HTTP proxy (CONNECT, absolute-form)
inline constexpr uint16_t kEgressTlsPort = 443;     // transparent TLS, 0.0.0.0
inline constexpr uint16_t kEgressHttpPort = 80;     // transparent HTTP, 0.0.0.0
inline constexpr uint16_t kEgressDnsPort = 53;      // stub DNS, UDP on 127.0.0.1
// The credential gateway's model endpoints: plain HTTP on 127.0.0.1, endpoint i on base + i.
inline constexpr uint16_t kEgressEndpointPortBase = 3129;
// Pending connections per listener before the kernel refuses more (listen backlog).
inline constexpr int kEgressBacklog = 128;

// A new network namespace with lo up and "local 0.0.0.0/0 dev lo" in the local table (IPv6
// keeps only ::1: a connect to another IPv6 address fails at once with ENETUNREACH). Returns
// an fd of the namespace (/proc/thread-self/ns/net), which keeps it alive; the session's
// sandbox joins it (SpawnRequest::netns_fd).
Result<UniqueFd> CreateAllowlistNetns();

// The network namespace process `pidfd` is in (setns with a pidfd, Linux 5.8): a restarted
// supervisor finds an allowlist session's namespace through its init. Fails with ESRCH once
// that process has exited.
Result<UniqueFd> OpenNetnsOf(int pidfd);

// Fresh listening sockets in the namespace `netns_fd` (CLOEXEC and non-blocking; TCP with
// SO_REUSEADDR so a re-hand after the egress daemon restarted binds again at once).
struct EgressListenerFds {
  UniqueFd proxy;                   // TCP 127.0.0.1:kEgressProxyPort
  UniqueFd tls;                     // TCP 0.0.0.0:kEgressTlsPort
  UniqueFd http;                    // TCP 0.0.0.0:kEgressHttpPort
  UniqueFd dns;                     // UDP 127.0.0.1:kEgressDnsPort
  std::vector<UniqueFd> endpoints;  // TCP 127.0.0.1:kEgressEndpointPortBase + i
};
Result<EgressListenerFds> CreateEgressListeners(int netns_fd, size_t endpoint_count);

}  // namespace mp::sandbox
