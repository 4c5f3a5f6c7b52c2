// The upstream URL of a credential gateway endpoint (issue 14): the one https origin (and an
// optional path prefix) a model endpoint forwards to, as a policy names it
// ("https://api.anthropic.com", "https://10.0.0.7:8443/v1"). Parsed by the supervisor's policy
// loader and again by monkeyproof-egress when the handover brings it. Pure; thread-safe (no
// state); outside input, fuzzed (tests/fuzz/egress_fuzz.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace mp::egress {

inline constexpr size_t kMaxUpstreamUrlBytes = 2048;

struct UpstreamUrl {
  std::string host;  // NormalizeHostName's or CanonicalAddress's text (no brackets)
  uint16_t port = 443;
  std::string path_prefix;  // "" or "/v1": starts with '/', never ends with '/'
};

// Only `https://HOST[:PORT][/PATH]`: HOST a DNS name (canonical: lower case, one trailing dot
// dropped), an IPv4 address, or an IPv6 address in brackets; PORT 1-65535; PATH of RFC 3986
// path characters with valid percent-escapes, no empty, "." or ".." segment, a trailing '/'
// dropped. No userinfo, query, fragment, whitespace or control characters; at most
// kMaxUpstreamUrlBytes. The error names what is wrong.
Result<UpstreamUrl> ParseUpstreamUrl(std::string_view url);

// The Host header value for requests to `url`: "host", or "host:port" when port is not 443;
// an IPv6 address in brackets.
std::string UpstreamHostHeader(const UpstreamUrl& url);
// "https://" + UpstreamHostHeader + path_prefix: text that ParseUpstreamUrl reads back as `url`.
std::string UpstreamUrlText(const UpstreamUrl& url);

}  // namespace mp::egress
