// Process-wide counters of monkeyproof-api, rendered as Prometheus text format 0.0.4 for
// GET /metrics. No per-session labels (cardinality stays fixed). Runs in monkeyproof-api;
// counters are atomics, safe from any thread; Render is a snapshot.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "common/messages.h"

namespace mp::http {

struct SupervisorGauges {  // from the supervisor's last health answer
  bool connected = false;
  uint32_t sessions_active = 0;
  uint32_t sessions_total = 0;
  uint32_t max_sessions = 0;
  uint32_t sessions_readopted = 0;   // at the supervisor's last start
  uint32_t readoption_failures = 0;  // likewise
  // Egress verdict totals since the supervisor's start (protocol version 5; absent before).
  std::optional<wire::EgressTotals> egress;
};

class Metrics {
 public:
  // HTTP responses by status class: index 1..5 for 1xx..5xx.
  void CountResponse(int status);
  void CountAuthFailure() { auth_failures_.fetch_add(1, std::memory_order_relaxed); }
  void CountRateLimited() { rate_limited_.fetch_add(1, std::memory_order_relaxed); }
  void CountTlsHandshakeFailure() { tls_failures_.fetch_add(1, std::memory_order_relaxed); }
  // An unauthenticated connection closed to admit a new one (connection_limits.h).
  void CountPreauthEviction() { preauth_evictions_.fetch_add(1, std::memory_order_relaxed); }
  void CountSessionCreated() { sessions_created_.fetch_add(1, std::memory_order_relaxed); }
  void AddWsBytes(uint64_t n) { ws_bytes_out_.fetch_add(n, std::memory_order_relaxed); }
  void CountWsLagged() { ws_lagged_.fetch_add(1, std::memory_order_relaxed); }
  void CountSupervisorReconnect() { reconnects_.fetch_add(1, std::memory_order_relaxed); }
  void ConnectionOpened() { connections_.fetch_add(1, std::memory_order_relaxed); }
  void ConnectionClosed() { connections_.fetch_sub(1, std::memory_order_relaxed); }
  void WsOpened() { ws_clients_.fetch_add(1, std::memory_order_relaxed); }
  void WsClosed() { ws_clients_.fetch_sub(1, std::memory_order_relaxed); }

  // Metric names start with monkeyproof_api_ (counters end in _total); each has # HELP and
  // # TYPE lines. Includes the supervisor gauges and process_resident_memory_bytes (from
  // /proc/self/statm when readable).
  [[nodiscard]] std::string Render(const SupervisorGauges& supervisor) const;

 private:
  std::array<std::atomic<uint64_t>, 6> responses_{};
  std::atomic<uint64_t> auth_failures_{0}, rate_limited_{0}, sessions_created_{0};
  std::atomic<uint64_t> ws_bytes_out_{0}, ws_lagged_{0}, reconnects_{0}, tls_failures_{0};
  std::atomic<uint64_t> preauth_evictions_{0};
  std::atomic<int64_t> connections_{0}, ws_clients_{0};
};

}  // namespace mp::http
