// The egress gateway's stub DNS (issue 14): a session's resolv.conf points at 127.0.0.1:53 in
// its network namespace, where the gateway answers every question itself and never forwards
// one. Allowed names get a synthetic address that the gateway's transparent listeners map back
// to the name; everything else gets NXDOMAIN at once. This file reads a query and writes the
// answer (RFC 1035 4.1); the decision and the address are the caller's. Pure; the bytes come
// from a sandboxed session (fuzzed: tests/fuzz/egress_fuzz.cc). Thread-safe (no state).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace mp::egress {

inline constexpr size_t kDnsHeaderSize = 12;
inline constexpr size_t kMaxDnsQuerySize = 512;  // UDP without EDNS; a query needs far less

enum class DnsType : uint16_t { kA = 1, kAaaa = 28 };

struct DnsQuery {
  uint16_t id = 0;
  bool recursion_desired = false;
  std::string name;      // canonical (NormalizeHostName); empty when not a valid host name
  uint16_t type = 0;     // QTYPE as sent
  uint16_t klass = 0;    // QCLASS as sent
  std::string question;  // the question section as sent (case kept: resolvers compare it)
};

// One standard query with one question. An error means no answer can be built (fewer than 12
// bytes, a response, a second question, a compressed or truncated name): drop the datagram.
// A question whose name is not a valid host name parses, with an empty `name`: answer it
// kNameError.
Result<DnsQuery> ParseDnsQuery(std::string_view bytes);

enum class DnsRcode : uint8_t {
  kNoError = 0,
  kFormatError = 1,
  kNameError = 3,  // NXDOMAIN
  kNotImplemented = 4,
  kRefused = 5,
};

// The answer to `query`: the header (QR, AA, RA, RD copied, `rcode`), the question as sent,
// and, when `address` is given (4 bytes for A, 16 for AAAA, matching the query's type), one
// answer record for it with `ttl_seconds`. Without an address a kNoError answer says "the name
// exists, no record of this type" (NODATA).
std::string BuildDnsAnswer(const DnsQuery& query, DnsRcode rcode,
                           std::optional<std::string_view> address = std::nullopt,
                           uint32_t ttl_seconds = 0);

}  // namespace mp::egress
