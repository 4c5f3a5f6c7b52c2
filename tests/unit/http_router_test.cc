// The route table and MatchRoute (src/http/router.h): every route of docs/api.md, HEAD as GET,
// 405 with Allow, bad targets, query parsing and percent-decoding.
#include "http/router.h"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace mp::http {
namespace {

struct RouteCase {
  std::string_view method;
  std::string_view target;
  Route route;
  std::string_view session_id;
};

TEST(RouteTableTest, EveryRouteInEnumOrder) {
  const std::span<const RouteSpec> table = RouteTable();
  ASSERT_EQ(table.size(), 22u);
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(table[i].route), i) << table[i].path;
    EXPECT_TRUE(table[i].method == "GET" || table[i].method == "POST" ||
                table[i].method == "DELETE");
    EXPECT_TRUE(table[i].path.starts_with("/"));
  }
  EXPECT_EQ(table[0].path, "/");
  EXPECT_EQ(table[7].path, "/openapi.json");
  EXPECT_EQ(table[11].method, "DELETE");
  EXPECT_EQ(table[11].path, "/sessions/{id}");
  EXPECT_EQ(table[18].path, "/sessions/{id}/ws");
}

TEST(MatchRouteTest, EveryRoute) {
  const std::vector<RouteCase> cases = {
      {"GET", "/", Route::kRoot, ""},
      {"GET", "/health", Route::kHealth, ""},
      {"GET", "/livez", Route::kLivez, ""},
      {"GET", "/healthz", Route::kLivez, ""},
      {"GET", "/readyz", Route::kReadyz, ""},
      {"GET", "/metrics", Route::kMetrics, ""},
      {"GET", "/version", Route::kVersion, ""},
      {"GET", "/policies", Route::kPolicies, ""},
      {"GET", "/openapi.json", Route::kOpenApi, ""},
      {"POST", "/sessions", Route::kCreateSession, ""},
      {"GET", "/sessions", Route::kListSessions, ""},
      {"GET", "/sessions/s-1", Route::kGetSession, "s-1"},
      {"DELETE", "/sessions/s-1", Route::kKillSession, "s-1"},
      {"POST", "/sessions/s-1/input", Route::kInput, "s-1"},
      {"POST", "/sessions/s-1/close-stdin", Route::kCloseStdin, "s-1"},
      {"POST", "/sessions/s-1/resize", Route::kResize, "s-1"},
      {"POST", "/sessions/s-1/signal", Route::kSignal, "s-1"},
      {"GET", "/sessions/s-1/transcript", Route::kTranscript, "s-1"},
      {"GET", "/sessions/s-1/output", Route::kOutput, "s-1"},
      {"GET", "/sessions/s-1/ws", Route::kWebSocket, "s-1"},
      // HEAD is GET.
      {"HEAD", "/", Route::kRoot, ""},
      {"HEAD", "/sessions", Route::kListSessions, ""},
      {"HEAD", "/sessions/s-9/transcript", Route::kTranscript, "s-9"},
      // The id is percent-decoded; in a path '+' is itself; its validity is the caller's check.
      {"GET", "/sessions/s%2D1", Route::kGetSession, "s-1"},
      {"GET", "/sessions/a+b", Route::kGetSession, "a+b"},
      {"GET", "/sessions/..", Route::kGetSession, ".."},
      {"GET", "/sessions/input", Route::kGetSession, "input"},
      {"GET", "/sessions/s-1?since=5", Route::kGetSession, "s-1"},
  };
  for (const RouteCase& c : cases) {
    const MatchResult r = MatchRoute(c.method, c.target);
    ASSERT_TRUE(r.match.has_value()) << c.method << " " << c.target;
    EXPECT_EQ(r.match->route, c.route) << c.method << " " << c.target;
    EXPECT_EQ(r.match->session_id, c.session_id) << c.method << " " << c.target;
  }
}

// Every route of the table, built from its OpenAPI path.
TEST(MatchRouteTest, TableRoundTrip) {
  for (const RouteSpec& spec : RouteTable()) {
    std::string target(spec.path);
    if (const size_t at = target.find("{id}"); at != std::string::npos) {
      target.replace(at, 4, "s-01JD");
    }
    const MatchResult r = MatchRoute(spec.method, target);
    ASSERT_TRUE(r.match.has_value()) << target;
    EXPECT_EQ(r.match->route, spec.route) << target;
  }
}

struct FailureCase {
  std::string_view method;
  std::string target;
  MatchFailure failure;
  std::string_view allow;
};

TEST(MatchRouteTest, Failures) {
  const std::vector<FailureCase> cases = {
      // Unknown paths.
      {"GET", "/nope", MatchFailure::kNotFound, ""},
      {"GET", "/sessions/", MatchFailure::kNotFound, ""},
      {"GET", "/sessions/s-1/", MatchFailure::kNotFound, ""},
      {"GET", "/sessions/s-1/nope", MatchFailure::kNotFound, ""},
      {"POST", "/sessions/s-1/input/x", MatchFailure::kNotFound, ""},
      {"GET", "/sessions//ws", MatchFailure::kNotFound, ""},
      {"GET", "//", MatchFailure::kNotFound, ""},
      {"GET", "/health/", MatchFailure::kNotFound, ""},
      {"GET", "/HEALTH", MatchFailure::kNotFound, ""},
      {"GET", "/sessi%6Fns", MatchFailure::kNotFound, ""},
      {"GET", "/" + std::string(8191, 'a'), MatchFailure::kNotFound, ""},
      // Known paths, other methods: Allow lists the table's methods in table order.
      {"PUT", "/sessions", MatchFailure::kMethodNotAllowed, "POST, GET"},
      {"DELETE", "/sessions", MatchFailure::kMethodNotAllowed, "POST, GET"},
      {"POST", "/sessions/s-1", MatchFailure::kMethodNotAllowed, "GET, DELETE"},
      {"PATCH", "/sessions/s-1", MatchFailure::kMethodNotAllowed, "GET, DELETE"},
      {"GET", "/sessions/s-1/input", MatchFailure::kMethodNotAllowed, "POST"},
      {"HEAD", "/sessions/s-1/signal", MatchFailure::kMethodNotAllowed, "POST"},
      {"POST", "/sessions/s-1/ws", MatchFailure::kMethodNotAllowed, "GET"},
      {"DELETE", "/sessions/s-1/transcript", MatchFailure::kMethodNotAllowed, "GET"},
      {"POST", "/health", MatchFailure::kMethodNotAllowed, "GET"},
      {"POST", "/healthz", MatchFailure::kMethodNotAllowed, "GET"},
      {"OPTIONS", "/", MatchFailure::kMethodNotAllowed, "GET"},
      {"get", "/", MatchFailure::kMethodNotAllowed, "GET"},  // methods are case-sensitive
      {"", "/metrics", MatchFailure::kMethodNotAllowed, "GET"},
      // Bad targets.
      {"GET", "", MatchFailure::kBadTarget, ""},
      {"GET", "sessions", MatchFailure::kBadTarget, ""},
      {"GET", "*", MatchFailure::kBadTarget, ""},
      {"GET", "http://localhost/sessions", MatchFailure::kBadTarget, ""},
      {"GET", "/" + std::string(8192, 'a'), MatchFailure::kBadTarget, ""},
      {"GET", "/sessions/a%2Fb", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions/a%2fb/ws", MatchFailure::kBadTarget, ""},
      {"PUT", "/sessions/a%2Fb", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions/s%00", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions/s%", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions/s%4", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions/s%zz", MatchFailure::kBadTarget, ""},
      {"GET", "/nope%", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions?since=%", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions?since=%G0", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions?a%00=1", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions?owner=a%00", MatchFailure::kBadTarget, ""},
      {"GET", "/a b", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions#top", MatchFailure::kBadTarget, ""},
      {"GET", std::string("/sessions\0", 10), MatchFailure::kBadTarget, ""},
      {"GET", "/sessions\r\n", MatchFailure::kBadTarget, ""},
      {"GET", "/sessions\x7f", MatchFailure::kBadTarget, ""},
  };
  for (const FailureCase& c : cases) {
    const MatchResult r = MatchRoute(c.method, c.target);
    const std::string what = std::string(c.method) + " " + c.target.substr(0, 60);
    ASSERT_FALSE(r.match.has_value()) << what;
    EXPECT_EQ(r.failure, c.failure) << what;
    EXPECT_EQ(r.allow, c.allow) << what;
  }
}

TEST(MatchRouteTest, QueryParameters) {
  MatchResult r = MatchRoute("GET", "/sessions/s-1/ws?since=5&token=abc");
  ASSERT_TRUE(r.match.has_value());
  EXPECT_EQ(r.match->route, Route::kWebSocket);
  EXPECT_EQ(r.match->query, (std::map<std::string, std::string>{{"since", "5"}, {"token", "abc"}}));

  // Repeated keys keep the first; '+' and %20 are spaces; UTF-8 escapes decode; a key without
  // '=' has an empty value; empty components are skipped.
  r = MatchRoute("GET", "/sessions?label=a&label=b&owner=me+you%20too&x=%E2%82%AC&flag&&=v&");
  ASSERT_TRUE(r.match.has_value());
  EXPECT_EQ(r.match->route, Route::kListSessions);
  EXPECT_EQ(r.match->query, (std::map<std::string, std::string>{{"label", "a"},
                                                                {"owner", "me you too"},
                                                                {"x", "\xE2\x82\xAC"},
                                                                {"flag", ""},
                                                                {"", "v"}}));

  // '=' inside a value, an encoded '&' and '/' in a query value are data.
  r = MatchRoute("GET", "/sessions?owner=a=b%26c%2Fd");
  ASSERT_TRUE(r.match.has_value());
  EXPECT_EQ(r.match->query.at("owner"), "a=b&c/d");

  // An empty query and no query.
  r = MatchRoute("GET", "/sessions?");
  ASSERT_TRUE(r.match.has_value());
  EXPECT_TRUE(r.match->query.empty());
  r = MatchRoute("GET", "/readyz");
  ASSERT_TRUE(r.match.has_value());
  EXPECT_TRUE(r.match->query.empty());

  // A '?' inside the query is data.
  r = MatchRoute("GET", "/sessions?owner=who?");
  ASSERT_TRUE(r.match.has_value());
  EXPECT_EQ(r.match->query.at("owner"), "who?");
}

TEST(PercentDecodeTest, Table) {
  struct Case {
    std::string_view in;
    std::optional<std::string> want;
  };
  const std::vector<Case> cases = {
      {"", ""},
      {"abc", "abc"},
      {"a+b", "a b"},
      {"a%20b", "a b"},
      {"%2B", "+"},
      {"%2b%2F", "+/"},
      {"%41%61", "Aa"},
      {"%e2%82%ac", "\xE2\x82\xAC"},
      {"%FF", "\xFF"},  // bytes, not text: validity is the caller's check
      {"100%25", "100%"},
      {"%", std::nullopt},
      {"%4", std::nullopt},
      {"a%", std::nullopt},
      {"%G1", std::nullopt},
      {"%1G", std::nullopt},
      {"%%41", std::nullopt},
      {"%00", std::nullopt},
      {std::string_view("a\0b", 3), std::nullopt},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(PercentDecode(c.in), c.want) << testing::PrintToString(std::string(c.in));
  }
}

}  // namespace
}  // namespace mp::http
