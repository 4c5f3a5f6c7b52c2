// ApiAudit: what monkeyproof-api writes to the supervisor's audit log itself, through `audit`
// control requests (docs/api.md "Audit log"): refused credentials (auth_failed, with the
// reason's class and never the credential), failure-limiter refusals (rate_limited), reads of
// a session (read: principal, session, route) and token operations. Refusals and reads pass an
// AuditThrottle per action first (refusals keyed by client address, reads by principal);
// what it holds back is written as one audit_suppressed line per key when its window ends, so
// a flood of failures or reads costs the log a bounded number of lines. Owned by ApiContext;
// runs on the io_context thread; not thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/messages.h"
#include "http/audit_throttle.h"
#include "http/router.h"
#include "http/supervisor_link.h"

namespace mp::http {

// Where a request came from, as the audit log names it: `client` is "api:<address>" (the
// client address, behind a trusted proxy the one it reported), `via` the TCP peer when that
// differs from the client's address (a trusted proxy), else "". Two fields, so that a forged
// forwarding header shows as a client that came via a proxy.
struct AuditOrigin {
  std::string client;
  std::string via;
};

// "GET /sessions/{id}/output": the route's method and OpenAPI path, never the raw target
// (which may carry ?token=). "other" when the request matched no route.
std::string AuditRouteName(const std::optional<Route>& route);

class ApiAudit {
 public:
  ApiAudit(boost::asio::io_context& io, SupervisorLink& link, AuditThrottleLimits refusals = {},
           AuditThrottleLimits reads = ReadLimits());

  // `address` is the client's address key (AddressKey), what the throttle counts under.
  void AuthFailed(wire::AuthFailureReason reason, const std::string& address,
                  const AuditOrigin& origin, std::string_view route);
  void RateLimited(const std::string& address, const AuditOrigin& origin, std::string_view route);
  void Read(const std::string& principal, const AuditOrigin& origin, const std::string& session,
            std::string_view route);
  // Not throttled: only the admin can mint or revoke, and the token store caps both.
  void Token(wire::AuditAction action, const std::string& principal, const AuditOrigin& origin,
             const std::string& token_id);

  // Writes the summaries of ended windows now (the timer calls it; tests may too).
  void Flush();

  static AuditThrottleLimits ReadLimits() { return {60, 600, std::chrono::seconds(60), 4096, 20}; }

 private:
  void Send(wire::AuditRequest request);
  void Throttled(AuditThrottle& throttle, const std::string& key, wire::AuditRequest request);
  void ArmTimer();
  void FlushOne(AuditThrottle& throttle, wire::AuditAction of);

  SupervisorLink& link_;
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // the timer handler's liveness check
  AuditThrottle auth_failed_;
  AuditThrottle rate_limited_;
  AuditThrottle reads_;
};

}  // namespace mp::http
