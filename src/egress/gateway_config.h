// What an EgressSession (egress_session.h) is told and what it reports (issue 14): its
// allowlist, the ports its transparent listeners stand for, its limits and deadlines, the
// resolver it asks for names, and the counters and verdicts it hands to its owner (the coming
// monkeyproof-egress daemon: audit log, session record, /metrics). Runs in the unprivileged
// egress daemon, never as root. Plain data; Counters are read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/result.h"
#include "egress/allow_list.h"
#include "egress/upstream_url.h"

namespace mp::egress {

// Resolves a host name on the host's side. Handlers run on the session's io_context.
class Resolver {
 public:
  using Handler = std::function<void(Result<std::vector<boost::asio::ip::address>>)>;
  virtual ~Resolver() = default;
  virtual void Resolve(const std::string& name, Handler handler) = 0;
};

struct GatewayLimits {
  uint32_t max_connections = 64;          // open client connections, all listeners together
  uint64_t max_total_bytes = 1ull << 34;  // bytes relayed (up + down) over the session's life
  double connections_per_second = 20;     // sustained new connections (token bucket)
  uint32_t connection_burst = 40;         // the bucket's size
  std::chrono::milliseconds head_timeout{10'000};     // request head / ClientHello complete
  std::chrono::milliseconds connect_timeout{10'000};  // upstream TCP connect
  std::chrono::milliseconds idle_timeout{300'000};    // a relay with no byte either way
  size_t max_head_bytes = 16 * 1024;                  // an HTTP request head
};

// A credential gateway model endpoint (issue 14): its listener takes plain HTTP/1.1 from the
// session and forwards each request over TLS to `upstream`, with `header: value` in place of
// whatever the session sent in `header`. The upstream is pinned: it needs no allow rule, but
// it must resolve to a public address (or, in tests, GatewayConfig::test_private_upstreams).
struct ModelEndpoint {
  UpstreamUrl upstream;
  std::string header;  // e.g. "x-api-key" (HandoverEndpoint::header's rules)
  std::string value;   // the real credential: never logged, never in an error text
};

struct GatewayConfig {
  std::string session_id;
  AllowList allow;
  uint16_t tls_port = 443;  // the port the transparent TLS listener stands for
  uint16_t http_port = 80;  // the port the transparent HTTP listener stands for
  GatewayLimits limits;
  // TEST ONLY. Upstream endpoints a *name* may resolve to although ClassifyAddress says they
  // are not public (tests point names at servers on 127.0.0.1). Production (the daemon) never
  // sets it: there, a non-public address is reachable only through an address rule in the
  // allowlist, which a client must then name by address. Never applies to the session's own
  // listeners.
  std::set<boost::asio::ip::tcp::endpoint> test_private_upstreams;
  // The model endpoints, in the order of GatewayListeners::endpoints.
  std::vector<ModelEndpoint> endpoints;
  // PEM file of the CAs an endpoint's upstream certificate must chain to; empty: the system
  // CA store. Set only by tests (and the daemon's --upstream-ca, which is for tests).
  std::string upstream_ca_file;
};

// Running totals for one session; plain atomics so the owner reads them from any thread.
struct GatewayCounters {
  std::atomic<uint64_t> allowed{0};     // connections allowed (verdict allow)
  std::atomic<uint64_t> denied{0};      // connections refused (policy, address class, limits)
  std::atomic<uint64_t> bytes_up{0};    // client -> upstream
  std::atomic<uint64_t> bytes_down{0};  // upstream -> client
  std::atomic<uint64_t> dns_answered{0};
  std::atomic<uint64_t> dns_nxdomain{0};
  std::atomic<uint64_t> gateway_requests{0};  // requests forwarded by model endpoints
  std::atomic<uint32_t> open_connections{0};
};

// One decision, for the audit log: a refusal at once, an allowed connection when it closes.
struct Verdict {
  std::string session_id;
  std::string listener;  // "proxy", "tls", "http", "endpoint" (one verdict per request)
  std::string name;      // host name or address as the client named it ("" if none); for
                         // "endpoint", the upstream's host
  uint16_t port = 0;
  bool allowed = false;
  std::string reason;  // for a refusal: why, e.g. "not in this session's allowlist"
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
};
using VerdictCallback = std::function<void(const Verdict&)>;

}  // namespace mp::egress
