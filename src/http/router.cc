#include "http/router.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

namespace mp::http {
namespace {

// Longest request-target accepted (path and query); Beast's header limit is larger.
constexpr size_t kMaxTargetBytes = 8192;

constexpr std::array<RouteSpec, 22> kRoutes{{
    {Route::kRoot, "GET", "/"},
    {Route::kHealth, "GET", "/health"},
    {Route::kLivez, "GET", "/livez"},
    {Route::kReadyz, "GET", "/readyz"},
    {Route::kMetrics, "GET", "/metrics"},
    {Route::kVersion, "GET", "/version"},
    {Route::kPolicies, "GET", "/policies"},
    {Route::kOpenApi, "GET", "/openapi.json"},
    {Route::kCreateSession, "POST", "/sessions"},
    {Route::kListSessions, "GET", "/sessions"},
    {Route::kGetSession, "GET", "/sessions/{id}"},
    {Route::kKillSession, "DELETE", "/sessions/{id}"},
    {Route::kInput, "POST", "/sessions/{id}/input"},
    {Route::kCloseStdin, "POST", "/sessions/{id}/close-stdin"},
    {Route::kResize, "POST", "/sessions/{id}/resize"},
    {Route::kSignal, "POST", "/sessions/{id}/signal"},
    {Route::kTranscript, "GET", "/sessions/{id}/transcript"},
    {Route::kOutput, "GET", "/sessions/{id}/output"},
    {Route::kWebSocket, "GET", "/sessions/{id}/ws"},
    {Route::kCreateToken, "POST", "/tokens"},
    {Route::kListTokens, "GET", "/tokens"},
    {Route::kRevokeToken, "DELETE", "/tokens/{id}"},
}};

constexpr std::string_view kIdSegment = "{id}";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `text`; '+' becomes a space only in query components (in a path it is a
// plain character). nullopt on a '%' without two hex digits and on NUL, raw or decoded.
std::optional<std::string> Decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = HexValue(text[i + 1]);
      const int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

// Bytes that can never appear in a request-target: controls, space, DEL, and '#' (a fragment
// is not sent to servers).
bool ValidTargetByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u != 0x7f && c != '#';
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  // `path` starts with '/'; "/" is one empty segment, "/a/b" is {"a", "b"}.
  std::vector<std::string_view> segments;
  size_t start = 1;
  while (true) {
    const size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      segments.push_back(path.substr(start));
      break;
    }
    segments.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return segments;
}

// Whether `segments` match `pattern`; the raw (still percent-encoded) id segment goes to *id.
bool PathMatches(const std::vector<std::string_view>& segments, std::string_view pattern,
                 std::string_view* id) {
  const std::vector<std::string_view> want = SplitPath(pattern);
  if (want.size() != segments.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == kIdSegment) {
      if (segments[i].empty()) return false;
      *id = segments[i];
    } else if (want[i] != segments[i]) {
      return false;
    }
  }
  return true;
}

bool ParseQuery(std::string_view query, std::map<std::string, std::string>* out) {
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view part = query.substr(start, end - start);
    if (!part.empty()) {
      const size_t eq = part.find('=');
      auto key = Decode(part.substr(0, eq), /*plus_is_space=*/true);
      auto value = Decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1),
                          /*plus_is_space=*/true);
      if (!key || !value) return false;
      out->emplace(std::move(*key), std::move(*value));  // a repeated key keeps the first
    }
    start = end + 1;
  }
  return true;
}

MatchResult Failure(MatchFailure failure, std::string allow = {}) {
  MatchResult result;
  result.failure = failure;
  result.allow = std::move(allow);
  return result;
}

}  // namespace

std::span<const RouteSpec> RouteTable() { return kRoutes; }

std::optional<std::string> PercentDecode(std::string_view text) {
  return Decode(text, /*plus_is_space=*/true);
}

MatchResult MatchRoute(std::string_view method, std::string_view target) {
  if (target.empty() || target.front() != '/' || target.size() > kMaxTargetBytes) {
    return Failure(MatchFailure::kBadTarget);
  }
  for (char c : target) {
    if (!ValidTargetByte(c)) return Failure(MatchFailure::kBadTarget);
  }
  const size_t question = target.find('?');
  std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  // Every escape must be well-formed, even where no route would match.
  if (!Decode(path, /*plus_is_space=*/false)) return Failure(MatchFailure::kBadTarget);
  RouteMatch match;
  if (!ParseQuery(query, &match.query)) return Failure(MatchFailure::kBadTarget);
  if (path == "/healthz") path = "/livez";

  const std::string_view effective = method == "HEAD" ? std::string_view("GET") : method;
  const std::vector<std::string_view> segments = SplitPath(path);
  const RouteSpec* found = nullptr;
  std::string_view raw_id;
  std::vector<std::string_view> methods;
  for (const RouteSpec& spec : kRoutes) {
    std::string_view id;
    if (!PathMatches(segments, spec.path, &id)) continue;
    raw_id = id;  // the same segment for every route of this path
    if (spec.method == effective && found == nullptr) found = &spec;
    if (std::find(methods.begin(), methods.end(), spec.method) == methods.end()) {
      methods.push_back(spec.method);
    }
  }
  if (!raw_id.empty()) {
    auto id = Decode(raw_id, /*plus_is_space=*/false);
    // An encoded '/' would make "/sessions/a%2Fb" name a session "a/b".
    if (!id || id->find('/') != std::string::npos) return Failure(MatchFailure::kBadTarget);
    match.session_id = std::move(*id);
  }
  if (found == nullptr) {
    if (methods.empty()) return Failure(MatchFailure::kNotFound);
    std::string allow;
    for (std::string_view m : methods) {
      if (!allow.empty()) allow += ", ";
      allow += m;
    }
    return Failure(MatchFailure::kMethodNotAllowed, std::move(allow));
  }
  match.route = found->route;
  MatchResult result;
  result.match = std::move(match);
  return result;
}

}  // namespace mp::http
