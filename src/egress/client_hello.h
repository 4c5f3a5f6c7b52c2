// The server name of a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), read by the egress
// gateway's transparent :443 listener before it connects anywhere: the name decides whether the
// connection is allowed and where it goes, and the bytes read are then forwarded unchanged.
// Pure; the bytes come from a sandboxed session (fuzzed: tests/fuzz/egress_fuzz.cc).
// Thread-safe (no state).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mp::egress {

// A ClientHello may span several TLS records (post-quantum key shares make it large); the
// gateway reads at most this much before it gives up on a connection.
inline constexpr size_t kMaxClientHelloBytes = 64 * 1024;

struct ClientHelloName {
  enum class Status {
    kNeedMore,   // `bytes` is a valid beginning; read more and call again
    kFound,      // `name` is the canonical host name (NormalizeHostName)
    kAbsent,     // a complete ClientHello without a server_name host name
    kMalformed,  // not TLS, not a ClientHello, or broken; `error` says where
  };
  Status status = Status::kNeedMore;
  std::string name;
  std::string error;
};

// Reads the ClientHello at the start of `bytes` (the first bytes the client sent). A name that
// is not a valid host name (an address, bad characters, two names) is kMalformed: the gateway
// refuses what it cannot name.
ClientHelloName ReadClientHelloName(std::string_view bytes);

}  // namespace mp::egress
