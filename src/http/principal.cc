#include "http/principal.h"

#include <chrono>

#include <nlohmann/json.hpp>

#include "common/json_strict.h"

namespace mp::http {

namespace {

// Longest token accepted from a subprotocol or an auth message (admin tokens are a line of a
// file; scoped ones are kScopedTokenChars).
constexpr size_t kMaxTokenChars = 4096;

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `f` with each comma-separated item of an HTTP list header, trimmed.
template <typename F>
void ForEachItem(std::string_view header, F f) {
  while (true) {
    const size_t comma = header.find(',');
    f(TrimSpaces(header.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    header.remove_prefix(comma + 1);
  }
}

}  // namespace

std::optional<std::string> WsProtocolToken(std::string_view header) {
  std::optional<std::string> found;
  bool ambiguous = false;
  ForEachItem(header, [&](std::string_view item) {
    if (!item.starts_with(kWsBearerProtocolPrefix)) return;
    const std::string_view token = item.substr(kWsBearerProtocolPrefix.size());
    if (token.empty() || token.size() > kMaxTokenChars) return;
    if (found) ambiguous = true;
    found = std::string(token);
  });
  if (ambiguous) return std::nullopt;
  return found;
}

bool OffersWsProtocol(std::string_view header) {
  bool offered = false;
  ForEachItem(header, [&](std::string_view item) { offered = offered || item == kWsProtocol; });
  return offered;
}

std::optional<std::string> ParseWsAuthMessage(std::string_view text) {
  nlohmann::json doc;
  if (text.size() > 2 * kMaxTokenChars || !wire::ParseJson(text, &doc, {2, false})) {
    return std::nullopt;
  }
  if (!doc.is_object() || doc.size() != 2) return std::nullopt;
  const auto type = doc.find("type");
  const auto token = doc.find("token");
  if (type == doc.end() || token == doc.end() || *type != "auth" || !token->is_string()) {
    return std::nullopt;
  }
  const auto& t = token->get_ref<const std::string&>();
  if (t.empty() || t.size() > kMaxTokenChars) return std::nullopt;
  return t;
}

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
    case Kind::kCertificate: {
      // The label must be printable ASCII (common::IsPrincipalLabel): other bytes of a UTF-8
      // CN, '%' itself and a trailing space are written %XX. A CN is at most 64 bytes, so the
      // label is at most 5 + 3 * 64 bytes, within kMaxPrincipalBytes.
      std::string out = "cert:";
      for (size_t i = 0; i < id.size(); ++i) {
        const auto u = static_cast<unsigned char>(id[i]);
        if (u < 0x20 || u > 0x7e || u == '%' || (u == ' ' && i + 1 == id.size())) {
          static constexpr char kHex[] = "0123456789ABCDEF";
          out += '%';
          out += kHex[u >> 4];
          out += kHex[u & 0xf];
        } else {
          out += static_cast<char>(u);
        }
      }
      return out;
    }
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
      out.failure = wire::AuthFailureReason::kExpired;
      return out;
    case TokenVerdict::kRevoked:
      out.reason = "token revoked";
      out.failure = wire::AuthFailureReason::kRevoked;
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
