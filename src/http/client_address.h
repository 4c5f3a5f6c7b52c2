// The client address of a request to monkeyproof-api: the TCP peer, or, when the peer is one
// of the configured trusted proxies (`trusted_proxies` in api.conf), the address that proxy
// reports in `X-Forwarded-For` or `Forwarded: for=` (RFC 7239). Pure functions over strings,
// no Asio; the headers are outside input (fuzzed: tests/fuzz/forwarded_fuzz.cc). Runs in
// monkeyproof-api; thread-safe (no state).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace mp::http {

// An IPv4 or IPv6 address. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is stored as IPv4.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 in the first 4
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
  // inet_ntop's text: "10.0.0.1", "2001:db8::1".
  [[nodiscard]] std::string ToString() const;
};

// Strict text forms only (inet_pton): no brackets, no port, no zone.
std::optional<IpAddress> ParseIpAddress(std::string_view text);

// The key every per-address limit counts a client under (the failed-auth limiter, the
// connection limits): an IPv4 address, or an IPv6 address's /64 ("2001:db8::/64"), what one
// host usually gets: rotating addresses inside it must not reset a limit.
std::string AddressKey(const IpAddress& a);
// The same for an address's text; text that is not an address (or already a key) is its own.
std::string AddressKey(std::string_view text);

// An address and a prefix length: "10.0.0.0/8", "::1" (= /128), "127.0.0.1" (= /32).
struct IpNetwork {
  IpAddress base;  // host bits cleared
  uint32_t prefix = 0;
  [[nodiscard]] bool Contains(const IpAddress& a) const;
};

// "127.0.0.1, ::1, 10.0.0.0/8": comma-separated, empty text = no network. Host bits set
// below the prefix ("10.0.0.1/8") are an error: the operator meant something else.
Result<std::vector<IpNetwork>> ParseNetworkList(std::string_view text);

// Whether `a` is in one of `networks`.
bool InNetworks(const IpAddress& a, const std::vector<IpNetwork>& networks);
// Whether `networks` hold a loopback address (127.0.0.0/8 or ::1): every local process can
// connect from there, so trusting it trusts every local user's forwarding headers.
bool IncludesLoopback(const std::vector<IpNetwork>& networks);

// Which header a trusted proxy's report of the client is read from. Only one: a proxy that
// sets X-Forwarded-For passes a client's own `Forwarded` through untouched, and reading it
// would let the client choose its address.
enum class ForwardedHeader { kXForwardedFor, kForwarded };

// One hop of a forwarding chain as a proxy reported it.
struct ForwardedHop {
  enum class Kind { kAddress, kObfuscated, kUnknown };
  Kind kind = Kind::kUnknown;
  IpAddress address;       // kAddress
  std::string obfuscated;  // kObfuscated: "_hidden" (RFC 7239 obfnode), at most 64 characters
};

// The hops of X-Forwarded-For values, left (client side) to right: "203.0.113.7, 10.0.0.2".
// Items may carry a port ("203.0.113.7:5000", "[2001:db8::1]:443") or brackets; anything
// else ("unknown", garbage, empty) is a kUnknown hop. `values` are the header's field values
// in the order they came (several header lines form one list). At most kMaxForwardedHops
// hops are returned, the right-most ones.
std::vector<ForwardedHop> ParseXForwardedFor(const std::vector<std::string_view>& values);

// The `for=` hops of Forwarded values (RFC 7239 section 4): elements separated by ',', pairs
// by ';', parameter names case-insensitive, values a token or a quoted-string ("[v6]:port"
// must be quoted). An element without `for=`, or with a malformed one, is a kUnknown hop; a
// malformed element (bad quoting) ends the list as one kUnknown hop. At most kMaxForwardedHops.
std::vector<ForwardedHop> ParseForwarded(const std::vector<std::string_view>& values);

inline constexpr size_t kMaxForwardedHops = 64;

// The address requests are attributed to (limiter, logs, audit). When `peer` is not in
// `trusted`, the peer. Otherwise the hops are walked from the right: each hop reported by a
// trusted address is believed; the first hop that is not itself a trusted proxy is the client.
// A hop that cannot be believed as an address (kUnknown) stops the walk at the trusted
// address that reported it; an obfuscated identifier ends it as "_ident" (a stable key the
// proxy chose). When every hop is trusted, the left-most one.
std::string ResolveClientAddress(const IpAddress& peer, const std::vector<ForwardedHop>& hops,
                                 const std::vector<IpNetwork>& trusted);

// All of the above for one request: `values` are the field values of `header` in the order
// they came. The peer alone, without parsing anything, when the peer is not trusted.
std::string ClientAddressOf(const IpAddress& peer, ForwardedHeader header,
                            const std::vector<std::string_view>& values,
                            const std::vector<IpNetwork>& trusted);

}  // namespace mp::http
