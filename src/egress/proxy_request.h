// Where a request to the egress gateway's HTTP proxy wants to go (issue 14), decided from its
// request line and Host header before anything is connected: `CONNECT host:port` (a tunnel,
// authority-form) or an absolute-form `http://host[:port]/path` (forwarded as origin-form).
// The HTTP framing itself is Beast's; this is what comes after it. Pure; the request comes from
// a sandboxed session (fuzzed: tests/fuzz/egress_fuzz.cc). Thread-safe (no state).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "egress/host_name.h"

namespace mp::egress {

struct ProxyTarget {
  Authority destination;
  bool tunnel = false;      // CONNECT: bytes are relayed after a 200
  std::string origin_form;  // for forwarded requests: "/path?query" ("/" when empty)
};

// `method` and `target` as on the request line; `host` the Host header's value, nullopt when
// absent. Refused, with an error that names the problem: CONNECT to anything but an authority;
// other methods with anything but an http:// absolute URL (origin-form means the client took
// the proxy for the server; https:// in absolute form must use CONNECT); userinfo in the URL;
// a fragment; a Host header that names another destination than the URL (RFC 9112 3.2.2 says
// the URL wins; a gateway that picks differently from its upstream is a classic bypass).
Result<ProxyTarget> ParseProxyTarget(std::string_view method, std::string_view target,
                                     std::optional<std::string_view> host);

}  // namespace mp::egress
