// Attribution through the API in process (monkeyproof-api against the fake supervisor, the
// fixture of the scoped-token tests): every request that acts on a session carries the
// principal the API authenticated, the session shows it as createdBy (GET and the list), and
// minting and revoking a token send an audit request naming the admin and the token id, never
// the secret. The admin token is the control: its principal is "admin".
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/api_json.h"
#include "http/principal.h"
#include "scope_fixture.h"

namespace mp::http {
namespace {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;
using scope_test::ApiFixture;
using scope_test::kAdmin;
using AttributionTest = ApiFixture;
using wire::RequestType;

TEST_F(AttributionTest, ScopedTokenActionsCarryItsPrincipal) {
  const json minted = Mint({{"sessions", "owner:alice"},
                            {"rights", {"read", "input", "kill", "create"}},
                            {"presets", {"claude"}},
                            {"workspaces", {"/srv/ws/alice"}},
                            {"ttlSeconds", 600}});
  const std::string token = minted.value("token", "");
  const std::string principal = "token:" + minted.value("id", "");
  ASSERT_FALSE(token.empty());

  auto created = Send(bhttp::verb::post, "/sessions", token,
                      R"({"task":"idle","mode":"print","preset":"claude"})");
  ASSERT_EQ(created.result_int(), 201) << created.body();
  const json body = json::parse(created.body());
  EXPECT_EQ(body.value("createdBy", ""), principal);
  EXPECT_EQ(fake_.last_principal(RequestType::kSpawn), principal);
  const std::string id = body.value("id", "");

  const auto got = json::parse(Send(bhttp::verb::get, "/sessions/" + id, token).body());
  EXPECT_EQ(got.value("createdBy", ""), principal);
  const auto list = json::parse(Send(bhttp::verb::get, "/sessions", token).body());
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].value("createdBy", ""), principal);

  struct Act {
    bhttp::verb method;
    std::string path;
    std::string body;
    RequestType type;
  };
  const std::vector<Act> acts = {
      {bhttp::verb::post, "/input", R"({"input":"x"})", RequestType::kStdin},
      {bhttp::verb::post, "/resize", R"({"rows":10,"cols":20})", RequestType::kResize},
      {bhttp::verb::post, "/signal", R"({"signal":"TERM"})", RequestType::kSignal},
      {bhttp::verb::post, "/close-stdin", "", RequestType::kCloseStdin},
      {bhttp::verb::delete_, "", "", RequestType::kKill},
  };
  for (const Act& a : acts) {
    SCOPED_TRACE(a.path.empty() ? "DELETE" : a.path);
    EXPECT_EQ(fake_.last_principal(a.type), "");  // nothing of this type yet
    (void)Send(a.method, "/sessions/" + id + a.path, token, a.body);
    EXPECT_EQ(fake_.last_principal(a.type), principal);
  }

  // Control: the admin's spawn and kill are the admin's.
  const std::string mine = Spawn({{"task", "idle"}});
  const auto admin_view = json::parse(Send(bhttp::verb::get, "/sessions/" + mine, kAdmin).body());
  EXPECT_EQ(admin_view.value("createdBy", ""), "admin");
  (void)Send(bhttp::verb::delete_, "/sessions/" + mine, kAdmin);
  EXPECT_EQ(fake_.last_principal(RequestType::kKill), "admin");
}

TEST(CreatedByJsonTest, NullWithoutACreator) {
  // A record from before attribution has no created_by: createdBy is null, not "" or absent.
  wire::SessionInfo info;
  info.id = "s-old1";
  json j = json::parse(SessionInfoJson(info, 0));
  ASSERT_TRUE(j.contains("createdBy")) << j.dump();
  EXPECT_TRUE(j["createdBy"].is_null()) << j.dump();
  info.created_by = "cert:build bot";
  j = json::parse(SessionInfoJson(info, 0));
  EXPECT_EQ(j["createdBy"], "cert:build bot");
}

TEST_F(AttributionTest, TokenOperationsAreAuditedWithoutTheSecret) {
  const json minted = Mint({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 60}});
  const std::string id = minted.value("id", "");
  const std::string token = minted.value("token", "");
  ASSERT_EQ(Send(bhttp::verb::delete_, "/tokens/" + id, kAdmin).result_int(), 200);
  // A refused revocation is not an operation: nothing audited (control for the count).
  ASSERT_EQ(Send(bhttp::verb::delete_, "/tokens/ffffffffffffffff", kAdmin).result_int(), 404);
  ASSERT_TRUE(fake_.WaitUntil([](const auto& f) { return f.audits().size() >= 2; },
                              std::chrono::seconds(5)));
  const auto audits = fake_.audits();
  ASSERT_EQ(audits.size(), 2u);
  EXPECT_EQ(audits[0].action, wire::AuditAction::kTokenCreate);
  EXPECT_EQ(audits[1].action, wire::AuditAction::kTokenRevoke);
  for (const auto& a : audits) {
    EXPECT_EQ(a.principal, "admin");
    EXPECT_EQ(a.token, id);
    EXPECT_EQ(a.client, "api:127.0.0.1");
    EXPECT_EQ(a.token.find(token.substr(token.size() - kTokenSecretChars)), std::string::npos);
  }
}

TEST(PrincipalLabelTest, EveryPrincipalIsAValidLabel) {
  using common::IsPrincipalLabel;
  EXPECT_EQ((Principal{Principal::Kind::kAdmin, "", std::nullopt}.ToString()), "admin");
  EXPECT_EQ((Principal{Principal::Kind::kToken, "0123456789abcdef", std::nullopt}.ToString()),
            "token:0123456789abcdef");
  EXPECT_EQ((Principal{Principal::Kind::kCertificate, "build bot", std::nullopt}.ToString()),
            "cert:build bot");
  // A UTF-8 CN, a '%' and a trailing space are escaped so that the label stays printable ASCII.
  const std::string escaped =
      Principal{Principal::Kind::kCertificate, "caf\xc3\xa9 50% ", std::nullopt}.ToString();
  EXPECT_EQ(escaped, "cert:caf%C3%A9 50%25%20");
  EXPECT_TRUE(IsPrincipalLabel(escaped));
  // The longest CN a verified certificate may have (64 bytes), all escaped, still fits.
  const std::string widest =
      Principal{Principal::Kind::kCertificate, std::string(64, '\xff'), std::nullopt}.ToString();
  EXPECT_TRUE(IsPrincipalLabel(widest)) << widest.size();
}

}  // namespace
}  // namespace mp::http
