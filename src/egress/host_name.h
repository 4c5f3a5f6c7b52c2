// Host names and network addresses as the egress gateway compares them (issue 14): one canonical
// text per name or address, so that a policy's allow rules, a proxy request's authority, a TLS
// ClientHello's server name and a DNS question are compared byte for byte. Pure functions over
// strings; every input here is outside input (policies, session traffic) and is fuzzed
// (tests/fuzz/egress_fuzz.cc). Runs in monkeyproof-egress and the supervisor's policy loader;
// thread-safe (no state).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace mp::egress {

inline constexpr size_t kMaxHostNameLength = 253;  // RFC 1035, without the trailing dot
inline constexpr size_t kMaxLabelLength = 63;

// A DNS host name in canonical form: ASCII letters, digits and hyphens in dot-separated labels
// of 1-63 characters that neither start nor end with a hyphen, lower case, one trailing dot
// removed, at most 253 characters. Internationalised names must come in their punycode form
// ("xn--"); a name whose last label is all digits is refused (it reads as an IPv4 address in
// WHATWG URL parsing, so clients disagree about what it is). The error says what is wrong.
Result<std::string> NormalizeHostName(std::string_view text);

// An IP literal in canonical form (inet_ntop's text: "10.0.0.1", "2001:db8::1"); IPv4-mapped
// IPv6 becomes the IPv4 text. Strict forms only: no brackets, no zone ("%eth0"), no shorthand
// IPv4 ("127.1"). nullopt when `text` is not one.
std::optional<std::string> CanonicalAddress(std::string_view text);

// A destination as a request names it: a host name or an address, and a port.
struct Authority {
  std::string host;  // NormalizeHostName's or CanonicalAddress's text
  bool is_address = false;
  uint16_t port = 0;
  friend bool operator==(const Authority&, const Authority&) = default;
  // "host:port", "[2001:db8::1]:443".
  [[nodiscard]] std::string ToString() const;
};

// A decimal TCP port 1-65535, digits only (no sign, no spaces, at most 5 digits).
std::optional<uint16_t> ParsePort(std::string_view text);

// "host:port", "1.2.3.4:port" or "[v6]:port" (a CONNECT request's authority-form; the port is
// required). The error names the part that is wrong.
Result<Authority> ParseAuthority(std::string_view text);

}  // namespace mp::egress
