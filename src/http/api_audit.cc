#include "http/api_audit.h"

#include <memory>
#include <optional>
#include <utility>

#include "common/log.h"
#include "common/proto_version.h"

namespace mp::http {

std::string AuditRouteName(const std::optional<Route>& route) {
  if (route) {
    for (const RouteSpec& spec : RouteTable()) {
      if (spec.route == *route) return std::string(spec.method) + " " + std::string(spec.path);
    }
  }
  return "other";
}

ApiAudit::ApiAudit(boost::asio::io_context& io, SupervisorLink& link, AuditThrottleLimits refusals,
                   AuditThrottleLimits reads)
    : link_(link), timer_(io), auth_failed_(refusals), rate_limited_(refusals), reads_(reads) {}

void ApiAudit::Send(wire::AuditRequest request) {
  const wire::AuditAction action = request.action;
  // An older supervisor has no such line (docs/protocol.md "Versions"); the link logged so once
  // when it connected, and a refusal per line would only flood the journal.
  if (!wire::AuditActionIn(action, link_.proto())) return;
  link_.Call(std::move(request), [action](Result<wire::Response> r) {
    if (r && r->ok()) return;
    // The supervisor is away or refused the line: the journal keeps that it was not written.
    common::Log(common::LogLevel::kWarning,
                "event=audit_failed action=" + std::string(wire::ToString(action)) + " reason=\"" +
                    (r ? std::get<wire::ErrorBody>(r->body).message : r.error().what) + "\"");
  });
}

void ApiAudit::Throttled(AuditThrottle& throttle, const std::string& key,
                         wire::AuditRequest request) {
  if (throttle.Admit(key, AuditThrottle::Clock::now())) {
    Send(std::move(request));
  } else {
    ArmTimer();
  }
}

void ApiAudit::AuthFailed(wire::AuthFailureReason reason, const std::string& address,
                          const AuditOrigin& origin, std::string_view route) {
  wire::AuditRequest a;
  a.action = wire::AuditAction::kAuthFailed;
  a.client = origin.client;
  a.via = origin.via;
  a.reason = reason;
  a.route = std::string(route);
  Throttled(auth_failed_, address, std::move(a));
}

void ApiAudit::RateLimited(const std::string& address, const AuditOrigin& origin,
                           std::string_view route) {
  wire::AuditRequest a;
  a.action = wire::AuditAction::kRateLimited;
  a.client = origin.client;
  a.via = origin.via;
  a.route = std::string(route);
  Throttled(rate_limited_, address, std::move(a));
}

void ApiAudit::Read(const std::string& principal, const AuditOrigin& origin,
                    const std::string& session, std::string_view route) {
  wire::AuditRequest a;
  a.action = wire::AuditAction::kRead;
  a.principal = principal;
  a.client = origin.client;
  a.via = origin.via;
  a.session = session;
  a.route = std::string(route);
  Throttled(reads_, principal, std::move(a));
}

void ApiAudit::Token(wire::AuditAction action, const std::string& principal,
                     const AuditOrigin& origin, const std::string& token_id) {
  wire::AuditRequest a;
  a.action = action;
  a.principal = principal;
  a.client = origin.client;
  a.via = origin.via;
  a.token = token_id;
  Send(std::move(a));
}

void ApiAudit::ArmTimer() {
  if (armed_) return;
  // The earliest window end of those holding lines back; Flush re-arms while any still is.
  std::optional<AuditThrottle::Clock::time_point> when;
  for (const AuditThrottle* t : {&auth_failed_, &rate_limited_, &reads_}) {
    if (t->holding() && (!when || t->window_end() < *when)) when = t->window_end();
  }
  if (!when) return;
  armed_ = true;
  timer_.expires_at(*when);
  // The handler may run after this object is gone (cancelled at its destruction): it checks.
  timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
    if (alive.expired()) return;
    armed_ = false;
    if (ec) return;
    Flush();
  });
}

void ApiAudit::FlushOne(AuditThrottle& throttle, wire::AuditAction of) {
  for (auto& s : throttle.TakeSummaries(AuditThrottle::Clock::now())) {
    wire::AuditRequest a;
    a.action = wire::AuditAction::kSuppressed;
    a.of = of;
    a.count = s.count;
    const bool other = s.key == AuditThrottle::kOtherKeys;
    // Refusals are counted by client address, reads by principal.
    if (of == wire::AuditAction::kRead) {
      if (!other) a.principal = s.key;
    } else {
      a.client = "api:" + s.key;
    }
    Send(std::move(a));
  }
}

void ApiAudit::Flush() {
  FlushOne(auth_failed_, wire::AuditAction::kAuthFailed);
  FlushOne(rate_limited_, wire::AuditAction::kRateLimited);
  FlushOne(reads_, wire::AuditAction::kRead);
  if (auth_failed_.holding() || rate_limited_.holding() || reads_.holding()) ArmTimer();
}

}  // namespace mp::http
