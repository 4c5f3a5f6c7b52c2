// Which addresses the egress gateway may connect to for a name (issue 14): the host's
// resolver can answer anything, and a name an allowlist permits must not become a way into the
// host's loopback services, the LAN, a cloud metadata endpoint or a multicast group. Only
// public unicast addresses are reachable through a name; everything else needs an address rule
// in the policy (allow_list.h). Pure; thread-safe (no state).
#pragma once

#include <string_view>

namespace mp::egress {

enum class AddressClass {
  kPublic,     // global unicast
  kLoopback,   // 127.0.0.0/8, ::1
  kPrivate,    // RFC 1918, 100.64.0.0/10 (CGNAT), fc00::/7, fec0::/10
  kLinkLocal,  // 169.254.0.0/16, fe80::/10
  kMetadata,   // 169.254.169.254, fd00:ec2::254 (cloud instance metadata)
  kMulticast,  // 224.0.0.0/4, ff00::/8, 255.255.255.255
  kReserved,   // unspecified, documentation, benchmarking, 240.0.0.0/4, discard-only, ...
  kNotAnAddress,
};

// The class of a canonical address (egress::CanonicalAddress). IPv6 forms that carry an IPv4
// address (IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16) take the class of the IPv4
// address inside when that is not public; Teredo (2001::/32) is reserved.
AddressClass ClassifyAddress(std::string_view address);
std::string_view ToString(AddressClass c);

}  // namespace mp::egress
