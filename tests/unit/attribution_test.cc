// Attribution on the control protocol and in the supervisor's audit log (issue 15): the
// `principal` of the requests that act on sessions, `created_by` of a session record (and its
// persistence as standalone JSON), the audit-only `audit` request, the label rule the
// supervisor holds the API-asserted principal to, and the audit log lines that carry it.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/messages.h"
#include "common/names.h"
#include "common/wire.h"
#include "supervisor/audit_log.h"
#include "temp_dir.h"

namespace mp::wire {
namespace {

constexpr char kSid[] = "s-01J9ZQ";
constexpr char kTokenPrincipal[] = "token:0123456789abcdef";

Result<Request> Decode(const std::string& json, DecodeDetail* detail = nullptr) {
  return DecodeRequest(FrameView{json, {}}, detail);
}

// Encodes and decodes `r`; returns the JSON that crossed the wire ("" on failure).
std::string RoundTrip(const Request& r) {
  auto frame = EncodeRequest(r);
  EXPECT_TRUE(frame) << frame.error().ToString();
  if (!frame) return {};
  auto view = DecodeFrame(*frame);
  EXPECT_TRUE(view);
  if (!view) return {};
  auto back = DecodeRequest(*view);
  EXPECT_TRUE(back) << back.error().ToString() << "\n" << view->json;
  if (back) {
    EXPECT_TRUE(*back == r) << view->json;
  }
  return std::string(view->json);
}

std::vector<Request> ActingRequests(const std::string& principal) {
  SpawnRequest spawn;
  spawn.task = "ls";
  spawn.client = "api:127.0.0.1";
  spawn.principal = principal;
  return {
      {1, spawn},
      {2, KillRequest{kSid, principal}},
      {3, SignalRequest{kSid, 15, principal}},
      {4, StdinRequest{kSid, {'y', '\n'}, principal}},
      {5, CloseStdinRequest{kSid, principal}},
      {6, ResizeRequest{kSid, PtySize{30, 100}, principal}},
  };
}

TEST(PrincipalWireTest, EveryActingRequestCarriesItAcross) {
  for (const Request& r : ActingRequests(kTokenPrincipal)) {
    SCOPED_TRACE(std::string(ToString(r.type())));
    const std::string json = RoundTrip(r);
    EXPECT_NE(json.find(R"("principal":"token:0123456789abcdef")"), std::string::npos) << json;
  }
}

TEST(PrincipalWireTest, AbsentIsEmptyAndNotWritten) {
  for (const Request& r : ActingRequests("")) {
    SCOPED_TRACE(std::string(ToString(r.type())));
    const std::string json = RoundTrip(r);
    EXPECT_EQ(json.find("principal"), std::string::npos) << json;
  }
  auto kill = Decode(R"({"id":1,"type":"kill","session":"s-1"})");
  ASSERT_TRUE(kill) << kill.error().ToString();
  EXPECT_EQ(std::get<KillRequest>(kill->body).principal, "");
}

TEST(PrincipalWireTest, RequestsThatDoNotActRefuseIt) {
  // Reading is not audited: a principal on get is an unknown field, like any other.
  auto get = Decode(R"({"id":1,"type":"get","session":"s-1","principal":"admin"})");
  ASSERT_FALSE(get);
  EXPECT_EQ(get.error().what, "/principal: unknown field");
}

TEST(PrincipalWireTest, BadLabelsAreRefusedNamingTheField) {
  const std::string too_long(kMaxPrincipalBytes + 1, 'a');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("")", "/principal: must not be empty"},
      {R"("admin\n")", R"("admin\x0a" is not a principal label)"},
      {R"("token:\u0000x")", "/principal: contains a NUL byte"},
      {R"(" admin")", "is not a principal label"},
      {R"("admin ")", "is not a principal label"},
      {R"("cert:caf\u00e9")", "is not a principal label"},
      {R"("cert:a\u007f")", "is not a principal label"},
      {"\"" + too_long + "\"", "/principal: string of 201 bytes exceeds the limit of 200"},
      {"7", "/principal: expected string, got unsigned integer"},
  };
  for (const auto& [value, want] : cases) {
    for (const std::string& head :
         {std::string(R"({"id":9,"type":"kill","session":"s-1",)"),
          std::string(R"({"id":9,"type":"spawn","task":"t","client":"c",)"),
          std::string(R"({"id":9,"type":"resize","session":"s-1","rows":1,"cols":1,)")}) {
      const std::string json = head + R"("principal":)" + value + "}";
      SCOPED_TRACE(json);
      DecodeDetail detail;
      auto r = Decode(json, &detail);
      ASSERT_FALSE(r);
      EXPECT_NE(r.error().what.find(want), std::string::npos) << r.error().what;
      EXPECT_EQ(detail.field, "/principal");
      EXPECT_EQ(detail.id, 9u);  // answered as bad_request, the connection stays
    }
  }
  // The control: the same requests with a good label decode.
  ASSERT_TRUE(Decode(R"({"id":9,"type":"kill","session":"s-1","principal":"cert:build bot"})"));
}

TEST(PrincipalWireTest, LabelRule) {
  using common::IsPrincipalLabel;
  EXPECT_TRUE(IsPrincipalLabel("admin"));
  EXPECT_TRUE(IsPrincipalLabel(kTokenPrincipal));
  EXPECT_TRUE(IsPrincipalLabel("cert:CN with spaces, commas & \"quotes\""));
  EXPECT_TRUE(IsPrincipalLabel(std::string(common::kMaxPrincipalBytes, '~')));
  EXPECT_FALSE(IsPrincipalLabel(""));
  EXPECT_FALSE(IsPrincipalLabel(std::string(common::kMaxPrincipalBytes + 1, 'a')));
  EXPECT_FALSE(IsPrincipalLabel(" a"));
  EXPECT_FALSE(IsPrincipalLabel("a "));
  EXPECT_FALSE(IsPrincipalLabel("a\tb"));
  EXPECT_FALSE(IsPrincipalLabel("a\x7f"));
  EXPECT_FALSE(IsPrincipalLabel("caf\xc3\xa9"));
}

TEST(AuditRequestTest, RoundTripsWithItsWireShape) {
  const Request r{
      3, AuditRequest{AuditAction::kTokenCreate, "admin", "0123456789abcdef", "api:203.0.113.7"}};
  EXPECT_EQ(RoundTrip(r), R"({"action":"token_create","client":"api:203.0.113.7","id":3,)"
                          R"("principal":"admin","token":"0123456789abcdef","type":"audit"})");
  EXPECT_EQ(ToString(AuditAction::kTokenRevoke), "token_revoke");
}

TEST(AuditRequestTest, Refusals) {
  const std::string ok_tail = R"("principal":"admin","token":"0123456789abcdef","client":"c"})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"id":1,"type":"audit","action":"spawn",)" + ok_tail, "/action: expected one of"},
      {R"({"id":1,"type":"audit","action":"token_create","token":"0123456789abcdef","client":"c"})",
       "/principal: required field is missing"},
      {R"({"id":1,"type":"audit","action":"token_create","principal":"admin","token":"mpt_0123456789abcdef_secret","client":"c"})",
       "/token: string of 27 bytes exceeds the limit of 16"},
      {R"({"id":1,"type":"audit","action":"token_create","principal":"admin","token":"0123456789ABCDEF","client":"c"})",
       "is not a token id (16 lowercase hex digits)"},
      {R"({"id":1,"type":"audit","action":"token_create","principal":"admin\r","token":"0123456789abcdef","client":"c"})",
       "is not a principal label"},
      {R"({"id":1,"type":"audit","action":"token_create","session":"s-1",)" + ok_tail,
       "/session: unknown field"},
  };
  for (const auto& [json, want] : cases) {
    SCOPED_TRACE(json);
    auto r = Decode(json);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().what.find(want), std::string::npos) << r.error().what;
  }
}

TEST(AuditRequestTest, TheApisOwnEventsRoundTripWithTheirMembersOnly) {
  AuditRequest read{AuditAction::kRead, "token:0123456789abcdef", "", "api:203.0.113.7"};
  read.via = "10.0.0.2";
  read.session = kSid;
  read.route = "GET /sessions/{id}/output";
  EXPECT_EQ(
      RoundTrip({4, read}),
      R"({"action":"read","client":"api:203.0.113.7","id":4,"principal":"token:0123456789abcdef",)"
      R"("route":"GET /sessions/{id}/output","session":"s-01J9ZQ","type":"audit","via":"10.0.0.2"})");
  AuditRequest failed{AuditAction::kAuthFailed, "", "", "api:203.0.113.7"};
  failed.reason = AuthFailureReason::kExpired;
  failed.route = "GET /sessions";
  EXPECT_EQ(RoundTrip({5, failed}),
            R"({"action":"auth_failed","client":"api:203.0.113.7","id":5,"reason":"expired",)"
            R"("route":"GET /sessions","type":"audit"})");
  AuditRequest limited{AuditAction::kRateLimited, "", "", "api:203.0.113.7"};
  limited.route = "other";
  (void)RoundTrip({6, limited});
  AuditRequest suppressed{AuditAction::kSuppressed, "", "", "api:203.0.113.7"};
  suppressed.of = AuditAction::kAuthFailed;
  suppressed.count = 990;
  EXPECT_EQ(RoundTrip({7, suppressed}),
            R"({"action":"audit_suppressed","client":"api:203.0.113.7","count":990,"id":7,)"
            R"("of":"auth_failed","type":"audit"})");
}

TEST(AuditRequestTest, EachActionRefusesMembersItDoesNotTake) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"id":1,"type":"audit","action":"auth_failed","client":"c","route":"GET /","reason":"nope"})",
       "/reason: expected one of"},
      {R"({"id":1,"type":"audit","action":"auth_failed","client":"c","route":"GET /"})",
       "/reason: required field is missing"},
      {R"({"id":1,"type":"audit","action":"auth_failed","client":"c","route":"GET /","reason":"invalid","token":"0123456789abcdef"})",
       "/token: unknown field"},
      {R"({"id":1,"type":"audit","action":"read","principal":"admin","client":"c","route":"GET /sessions/{id}"})",
       "/session: required field is missing"},
      {R"({"id":1,"type":"audit","action":"read","principal":"admin","client":"c","session":"s-1","route":"GET /\u000a"})",
       "/route"},
      {R"({"id":1,"type":"audit","action":"audit_suppressed","of":"token_create","count":3})",
       "/of: expected one of read, auth_failed, rate_limited"},
      {R"({"id":1,"type":"audit","action":"audit_suppressed","of":"read","count":0})", "/count"},
      {R"({"id":1,"type":"audit","action":"rate_limited","client":"c","route":"GET /","via":""})",
       "/via"},
  };
  for (const auto& [json, want] : cases) {
    SCOPED_TRACE(json);
    auto r = Decode(json);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().what.find(want), std::string::npos) << r.error().what;
  }
}

TEST(PrincipalWireTest, ActingRequestsCarryClientAndViaAcross) {
  for (Request r : ActingRequests(kTokenPrincipal)) {
    SCOPED_TRACE(std::string(ToString(r.type())));
    std::visit(
        [](auto& b) {
          if constexpr (requires { b.via; }) {
            b.client = "api:203.0.113.7";
            b.via = "127.0.0.1";
          }
        },
        r.body);
    const std::string json = RoundTrip(r);
    EXPECT_NE(json.find(R"("client":"api:203.0.113.7")"), std::string::npos) << json;
    EXPECT_NE(json.find(R"("via":"127.0.0.1")"), std::string::npos) << json;
  }
}

SessionInfo Info() {
  SessionInfo s;
  s.id = kSid;
  s.state = SessionState::kRunning;
  s.task_preview = "ls";
  s.cwd = "/w";
  s.command = "sh -lc ls";
  s.created_at_ms = 1;
  return s;
}

TEST(CreatedByTest, TravelsInResponsesAndTheStoredRecord) {
  SessionInfo s = Info();
  s.created_by = kTokenPrincipal;
  const std::string json = SessionInfoToJson(s);
  EXPECT_NE(json.find(R"("created_by":"token:0123456789abcdef")"), std::string::npos) << json;
  auto back = SessionInfoFromJson(json);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->created_by, kTokenPrincipal);

  auto frame = EncodeResponse({4, s});
  ASSERT_TRUE(frame);
  auto view = DecodeFrame(*frame);
  ASSERT_TRUE(view);
  auto resp = DecodeResponse(*view);
  ASSERT_TRUE(resp) << resp.error().ToString();
  EXPECT_EQ(std::get<SessionInfo>(resp->body).created_by, kTokenPrincipal);
}

TEST(CreatedByTest, ARecordFromBeforeAttributionStillLoads) {
  const std::string json = SessionInfoToJson(Info());
  EXPECT_EQ(json.find("created_by"), std::string::npos) << json;
  auto back = SessionInfoFromJson(json);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->created_by, "");
  auto bad = SessionInfoFromJson(
      R"({"id":"s-1","state":"running","type":"exec","task_preview":"","cwd":"/","command":"",)"
      R"("created_at_ms":1,"output_bytes":0,"created_by":"admin\n"})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().what.find("/created_by"), std::string::npos) << bad.error().what;
}

}  // namespace
}  // namespace mp::wire

namespace mp::supervisor {
namespace {

std::vector<nlohmann::json> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    out.push_back(nlohmann::json::parse(line, nullptr, false));
  }
  return out;
}

TEST(AuditLogTest, EachLineNamesThePrincipalOrNullWhenNone) {
  test::TempDir dir("audit-log-test");
  const std::string path = dir.path() + "/audit.log";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log) << log.error().ToString();
  log->Write({"spawn",
              "s-1",
              "token:0123456789abcdef",
              42,
              999,
              "api:10.0.0.1",
              "",
              "ok",
              {AuditField::String("preset", "x")}});
  log->Write({"stdin",
              "s-1",
              "admin",
              42,
              999,
              "api:10.0.0.1",
              "",
              "ok",
              {AuditField::Number("bytes", 2)}});
  log->Write({"kill", "s-1", "", 42, 999, "", "", "ok", {}});
  log->Write({"token_create",
              "",
              "cert:a \"b\" \\c",
              42,
              999,
              "api:::1",
              "",
              "ok",
              {AuditField::String("token", "0123456789abcdef")}});
  const auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 4u);
  for (const auto& l : lines) ASSERT_TRUE(l.is_object()) << "not JSON";
  EXPECT_EQ(lines[0]["action"], "spawn");
  EXPECT_EQ(lines[0]["principal"], "token:0123456789abcdef");
  EXPECT_EQ(lines[0]["session"], "s-1");
  EXPECT_EQ(lines[0]["peer_uid"], 999);
  EXPECT_EQ(lines[1]["principal"], "admin");
  EXPECT_TRUE(lines[2]["principal"].is_null());  // not attributed: null, not ""
  EXPECT_EQ(lines[3]["action"], "token_create");
  EXPECT_EQ(lines[3]["principal"], "cert:a \"b\" \\c");
  EXPECT_EQ(lines[3]["token"], "0123456789abcdef");
}

}  // namespace
}  // namespace mp::supervisor
