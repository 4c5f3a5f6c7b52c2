#include "http/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <string_view>

namespace mp::http {
namespace {

// Appends one metric family: its # HELP and # TYPE lines, then its samples. `help` must not
// hold a backslash or a newline (the format would need them escaped); ours are literals.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_->append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_->append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }
  template <typename T>
  void Sample(std::string_view name, T value, std::string_view labels = {}) {
    out_->append(name);
    if (!labels.empty()) out_->append("{").append(labels).append("}");
    out_->append(" ").append(std::to_string(value)).append("\n");
  }
  template <typename T>
  void One(std::string_view name, std::string_view type, std::string_view help, T value) {
    Family(name, type, help);
    Sample(name, value);
  }

 private:
  std::string* out_;
};

// Resident set size in bytes: the second field of /proc/self/statm, in pages.
std::optional<uint64_t> ResidentBytes() {
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[256];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof(buf) - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  const std::string_view text(buf, static_cast<size_t>(n));
  const size_t space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view rest = text.substr(space + 1);
  uint64_t pages = 0;
  const auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pages);
  if (ec != std::errc() || p == rest.data()) return std::nullopt;
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (page_size <= 0) return std::nullopt;
  return pages * static_cast<uint64_t>(page_size);
}

}  // namespace

void Metrics::CountResponse(int status) {
  // Index 0 takes anything outside 100..599; it is not rendered (no such status is sent).
  const int cls = status / 100;
  const size_t index = (status >= 100 && cls <= 5) ? static_cast<size_t>(cls) : 0;
  responses_[index].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::Render(const SupervisorGauges& supervisor) const {
  std::string out;
  out.reserve(4096);
  Writer w(&out);
  const auto get = [](const auto& a) { return a.load(std::memory_order_relaxed); };

  w.Family("monkeyproof_api_http_responses_total", "counter",
           "HTTP responses sent, by status class.");
  for (size_t cls = 1; cls <= 5; ++cls) {
    const std::string label = "code=\"" + std::to_string(cls) + "xx\"";
    w.Sample("monkeyproof_api_http_responses_total", get(responses_[cls]), label);
  }
  w.One("monkeyproof_api_auth_failures_total", "counter",
        "Requests refused for a missing or wrong token.", get(auth_failures_));
  w.One("monkeyproof_api_rate_limited_total", "counter",
        "Requests refused because their address failed auth too often.", get(rate_limited_));
  w.One("monkeyproof_api_tls_handshake_failures_total", "counter",
        "TLS connections that ended in the handshake (old protocol, no shared cipher, no or an "
        "unverified client certificate, or not TLS at all).",
        get(tls_failures_));
  w.One("monkeyproof_api_preauth_evictions_total", "counter",
        "Connections that had not authenticated, closed to admit a new one because their "
        "address's or the global connection cap was full (the oldest goes first).",
        get(preauth_evictions_));
  w.One("monkeyproof_api_sessions_created_total", "counter",
        "Sessions created through this API process.", get(sessions_created_));
  w.One("monkeyproof_api_ws_bytes_sent_total", "counter",
        "Bytes of session output sent to WebSocket clients.", get(ws_bytes_out_));
  w.One("monkeyproof_api_ws_lagged_total", "counter",
        "Times a WebSocket client fell behind its outbox limit.", get(ws_lagged_));
  w.One("monkeyproof_api_supervisor_reconnects_total", "counter",
        "Reconnections to the supervisor's control socket.", get(reconnects_));
  w.One("monkeyproof_api_connections", "gauge", "Open client connections (HTTP and WebSocket).",
        get(connections_));
  w.One("monkeyproof_api_ws_clients", "gauge", "Open WebSocket connections.", get(ws_clients_));

  w.One("monkeyproof_supervisor_up", "gauge",
        "1 when the supervisor answered its last health check, else 0.",
        supervisor.connected ? 1 : 0);
  w.One("monkeyproof_sessions_active", "gauge",
        "Sessions starting or running, as the supervisor reports.", supervisor.sessions_active);
  w.One("monkeyproof_sessions_total", "gauge",
        "Session records the supervisor holds, ended ones included.", supervisor.sessions_total);
  w.One("monkeyproof_sessions_max", "gauge", "The supervisor's capacity for active sessions.",
        supervisor.max_sessions);
  w.One("monkeyproof_sessions_readopted", "gauge",
        "Running sessions the supervisor took over at its last start, after a restart.",
        supervisor.sessions_readopted);
  w.One("monkeyproof_session_readoption_failures", "gauge",
        "Running sessions the supervisor could not take over at its last start (ended as "
        "supervisor_restart).",
        supervisor.readoption_failures);
  if (supervisor.egress) {
    // Totals over every allowlist session: no per-session labels (issue 14).
    const wire::EgressTotals& e = *supervisor.egress;
    w.Family("monkeyproof_egress_connections_total", "counter",
             "Egress connections of allowlist sessions (gateway requests included), by verdict.");
    w.Sample("monkeyproof_egress_connections_total", e.counters.allowed, "verdict=\"allow\"");
    w.Sample("monkeyproof_egress_connections_total", e.counters.denied, "verdict=\"deny\"");
    w.Family("monkeyproof_egress_bytes_total", "counter",
             "Bytes relayed for allowlist sessions (of connections that closed), by direction.");
    w.Sample("monkeyproof_egress_bytes_total", e.counters.bytes_up, "direction=\"up\"");
    w.Sample("monkeyproof_egress_bytes_total", e.counters.bytes_down, "direction=\"down\"");
    w.Family("monkeyproof_egress_dns_queries_total", "counter",
             "Stub DNS queries of allowlist sessions, by verdict (deny: NXDOMAIN).");
    w.Sample("monkeyproof_egress_dns_queries_total", e.counters.dns_answered, "verdict=\"allow\"");
    w.Sample("monkeyproof_egress_dns_queries_total", e.counters.dns_refused, "verdict=\"deny\"");
    w.One("monkeyproof_egress_gateway_requests_total", "counter",
          "Requests the credential gateway forwarded to model endpoints.",
          e.counters.gateway_requests);
    w.One("monkeyproof_egress_reports_dropped_total", "counter",
          "Verdict reports monkeyproof-egress dropped because the supervisor did not read them "
          "(their verdicts are missing from the counters and the audit log).",
          e.reports_dropped);
    w.One("monkeyproof_egress_reports_refused_total", "counter",
          "Malformed verdict reports the supervisor ignored.", e.reports_refused);
  }

  if (const auto rss = ResidentBytes()) {
    w.One("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", *rss);
  }
  return out;
}

}  // namespace mp::http
