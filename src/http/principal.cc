#include "http/principal.h"

#include <chrono>

namespace mp::http {

uint64_t WallClockMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string Principal::ToString() const {
  switch (kind) {
    case Kind::kAdmin:
      return "admin";
    case Kind::kToken:
      return "token:" + id;
    case Kind::kCertificate:
      return "cert:" + id;
  }
  return "unknown";
}

AuthOutcome Authenticate(const TokenSet& admin, const TokenStore& store, std::string_view token,
                         uint64_t now_ms) {
  AuthOutcome out;
  if (admin.Accepts(token)) {
    out.principal = Principal{Principal::Kind::kAdmin, "", std::nullopt};
    return out;
  }
  const TokenRecord* record = nullptr;
  switch (store.Verify(token, now_ms, &record)) {
    case TokenVerdict::kValid:
      out.principal = Principal{Principal::Kind::kToken, record->id, record->scope};
      return out;
    case TokenVerdict::kExpired:
      out.reason = "token expired; ask for a new one";
      return out;
    case TokenVerdict::kRevoked:
      out.reason = "token revoked";
      return out;
    case TokenVerdict::kNotScoped:
    case TokenVerdict::kUnknown:
      break;
  }
  out.reason = "Unauthorized";
  return out;
}

Access RouteAccess(Route route) {
  switch (route) {
    case Route::kRoot:
    case Route::kHealth:
    case Route::kLivez:
    case Route::kReadyz:
    case Route::kVersion:
    case Route::kPolicies:
    case Route::kOpenApi:
      return Access::kAny;
    case Route::kMetrics:
    case Route::kCreateToken:
    case Route::kListTokens:
    case Route::kRevokeToken:
      return Access::kAdmin;
    case Route::kListSessions:
    case Route::kGetSession:
    case Route::kTranscript:
    case Route::kOutput:
    case Route::kWebSocket:
      return Access::kRead;
    case Route::kInput:
    case Route::kCloseStdin:
    case Route::kResize:
    case Route::kSignal:
      return Access::kInput;
    case Route::kKillSession:
      return Access::kKill;
    case Route::kCreateSession:
      return Access::kCreate;
  }
  return Access::kAdmin;
}

bool RouteNamesSession(Route route) {
  switch (route) {
    case Route::kGetSession:
    case Route::kKillSession:
    case Route::kInput:
    case Route::kCloseStdin:
    case Route::kResize:
    case Route::kSignal:
    case Route::kTranscript:
    case Route::kOutput:
    case Route::kWebSocket:
      return true;
    default:
      return false;
  }
}

std::optional<std::string> MissingAccess(const Principal& principal, Access access) {
  auto lacks = [](Right r) {
    return "this token lacks the " + std::string(ToString(r)) + " right";
  };
  switch (access) {
    case Access::kAny:
      return std::nullopt;
    case Access::kAdmin:
      if (principal.unrestricted()) return std::nullopt;
      return std::string("this route needs the admin token; a scoped token cannot use it");
    case Access::kRead:
      return principal.Has(Right::kRead) ? std::nullopt : std::optional(lacks(Right::kRead));
    case Access::kInput:
      return principal.Has(Right::kInput) ? std::nullopt : std::optional(lacks(Right::kInput));
    case Access::kKill:
      return principal.Has(Right::kKill) ? std::nullopt : std::optional(lacks(Right::kKill));
    case Access::kCreate:
      return principal.Has(Right::kCreate) ? std::nullopt : std::optional(lacks(Right::kCreate));
  }
  return std::string("access denied");
}

}  // namespace mp::http
