// The public API's route table (docs/api.md) and the target parser: method + request target
// -> which route, its session id and its query parameters. The table is also what the
// OpenAPI test (tests/unit/openapi_test.cc) checks docs/openapi.json against. Runs in
// monkeyproof-api. Pure functions; no syscalls.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mp::http {

enum class Route {
  kRoot,           // GET /
  kHealth,         // GET /health
  kLivez,          // GET /livez (also /healthz)
  kReadyz,         // GET /readyz
  kMetrics,        // GET /metrics
  kVersion,        // GET /version
  kPolicies,       // GET /policies
  kOpenApi,        // GET /openapi.json
  kCreateSession,  // POST /sessions
  kListSessions,   // GET /sessions
  kGetSession,     // GET /sessions/{id}
  kKillSession,    // DELETE /sessions/{id}
  kInput,          // POST /sessions/{id}/input
  kCloseStdin,     // POST /sessions/{id}/close-stdin
  kResize,         // POST /sessions/{id}/resize
  kSignal,         // POST /sessions/{id}/signal
  kTranscript,     // GET /sessions/{id}/transcript
  kOutput,         // GET /sessions/{id}/output
  kWebSocket,      // GET /sessions/{id}/ws (upgrade)
  kCreateToken,    // POST /tokens
  kListTokens,     // GET /tokens
  kRevokeToken,    // DELETE /tokens/{id}
};

struct RouteSpec {
  Route route;
  std::string_view method;  // "GET", "POST", "DELETE"
  std::string_view path;    // OpenAPI form: "/sessions/{id}/input"
};
// Every route, in the order above (aliases such as /healthz are not listed).
std::span<const RouteSpec> RouteTable();

struct RouteMatch {
  Route route = Route::kRoot;
  std::string session_id;  // the {id} of /sessions/{id}/... (or /tokens/{id}); percent-decoded
  std::map<std::string, std::string> query;  // percent-decoded; a repeated key keeps the first
};

enum class MatchFailure {
  kNotFound,          // no route has this path
  kMethodNotAllowed,  // the path exists with other methods (see AllowedMethods)
  kBadTarget,         // not origin-form, bad percent-encoding, NUL, or over the size caps
};
struct MatchResult {
  std::optional<RouteMatch> match;
  MatchFailure failure = MatchFailure::kNotFound;  // when !match
  std::string allow;                               // "GET, DELETE" for kMethodNotAllowed
};

// `method` as sent ("GET"); `target` the request-target ("/sessions/s-1/ws?since=5&token=x").
// HEAD is treated as GET. A trailing slash is not stripped ("/sessions/" is not found). The
// id segment must be non-empty and free of '/'; whether it is a valid session id is the
// caller's check (unknown ids are 404 "Not found").
MatchResult MatchRoute(std::string_view method, std::string_view target);

// Percent-decoding of one query component ('+' is a space); nullopt on bad escapes or NUL.
std::optional<std::string> PercentDecode(std::string_view text);

}  // namespace mp::http
