// The host's port sysctls as monkeyproofd's bind guard (sandbox/loopback_guard.h) and
// monkeyproof-api read them: net.ipv4.ip_local_port_range, the ephemeral range (IPv6 shares
// it), and net.ipv4.ip_local_reserved_ports, ports inside that range which the kernel never
// picks on its own because services listen there. Strict parsers of the files' kernel format
// (pure; tests/fuzz/port_ranges_fuzz.cc) and their readers. Any process; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mp::common {

// An inclusive range of ports, host byte order.
struct PortRange {
  uint16_t low = 0;
  uint16_t high = 0;
  bool Contains(uint16_t port) const { return low <= port && port <= high; }
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

inline constexpr char kEphemeralPortRangePath[] = "/proc/sys/net/ipv4/ip_local_port_range";
inline constexpr char kReservedPortsPath[] = "/proc/sys/net/ipv4/ip_local_reserved_ports";

// ip_local_port_range's text: two ports "LOW\tHIGH" (any run of spaces or tabs between them),
// 0 < LOW <= HIGH <= 65535, then at most one newline.
Result<PortRange> ParseEphemeralPortRange(std::string_view text);

// ip_local_reserved_ports' text: ports and inclusive ranges "A-B" (A <= B <= 65535) separated
// by commas, without spaces, then at most one newline; empty (or one newline): none. Every
// other byte, an empty item, a leading zero or a number over 65535 is an error naming its
// offset. The ranges in the file's order.
Result<std::vector<PortRange>> ParseReservedPorts(std::string_view text);

// The files themselves (paths are parameters for tests). Errors name the file.
Result<PortRange> ReadEphemeralPortRange(const char* path = kEphemeralPortRangePath);
Result<std::vector<PortRange>> ReadReservedPorts(const char* path = kReservedPortsPath);

// Whether one of `ranges` holds `port`.
bool AnyContains(const std::vector<PortRange>& ranges, uint16_t port);

// For a service of the host listening on `port`: a warning when the port lies in `ephemeral`
// and `reserved` does not hold it. monkeyproofd's bind guard lets a host-network session bind
// such a port, so while the service restarts a session could take it. Empty: no warning. Pure.
std::string SquattablePortWarning(uint16_t port, PortRange ephemeral,
                                  const std::vector<PortRange>& reserved);
// The same for each of `ports` against the host's sysctls now; a sysctl that cannot be read
// is itself a warning.
std::vector<std::string> SquattablePortWarnings(const std::vector<uint16_t>& ports);

}  // namespace mp::common
