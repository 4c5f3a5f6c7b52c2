// Scoped tokens end to end in process (monkeyproof-api against the fake supervisor, as in
// http_server_test.cc): POST/GET/DELETE /tokens, and the scope matrix: each right on each
// route, allowed and refused (403 naming the missing right), sessions outside the scope
// answered as unknown, the list filtered to the scope, create limited to the token's presets
// and owner/label, expired and revoked tokens (401), revocation across an API restart, a
// damaged store refused at start, and the input right on the WebSocket. No root.
#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "scope_fixture.h"

namespace mp::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using asio::ip::tcp;
using json = nlohmann::json;
using Response = bhttp::response<bhttp::string_body>;

using scope_test::ApiFixture;
using scope_test::kAdmin;
using scope_test::SetReceiveTimeout;
using ScopeTest = ApiFixture;

struct RouteCase {
  bhttp::verb method;
  std::string path;  // "{id}" is replaced by a fresh in-scope session
  std::string body;
  std::string needs;  // a right, "admin", or "" (any token)
};

std::vector<RouteCase> Routes() {
  return {
      {bhttp::verb::get, "/", "", ""},
      {bhttp::verb::get, "/health", "", ""},
      {bhttp::verb::get, "/livez", "", ""},
      {bhttp::verb::get, "/readyz", "", ""},
      {bhttp::verb::get, "/version", "", ""},
      {bhttp::verb::get, "/policies", "", ""},
      {bhttp::verb::get, "/openapi.json", "", ""},
      {bhttp::verb::get, "/metrics", "", "admin"},
      {bhttp::verb::post, "/tokens",
       R"({"sessions":"owner:alice","rights":["read"],"ttlSeconds":60})", "admin"},
      {bhttp::verb::get, "/tokens", "", "admin"},
      {bhttp::verb::delete_, "/tokens/0123456789abcdef", "", "admin"},
      {bhttp::verb::post, "/sessions", R"({"task":"idle","mode":"print","preset":"claude"})",
       "create"},
      {bhttp::verb::get, "/sessions", "", "read"},
      {bhttp::verb::get, "/sessions/{id}", "", "read"},
      {bhttp::verb::get, "/sessions/{id}/transcript", "", "read"},
      {bhttp::verb::get, "/sessions/{id}/output", "", "read"},
      {bhttp::verb::get, "/sessions/{id}/ws", "", "read"},  // not an upgrade: 400 when allowed
      {bhttp::verb::post, "/sessions/{id}/input", R"({"input":"x"})", "input"},
      {bhttp::verb::post, "/sessions/{id}/close-stdin", "", "input"},
      {bhttp::verb::post, "/sessions/{id}/resize", R"({"rows":10,"cols":20})", "input"},
      {bhttp::verb::post, "/sessions/{id}/signal", R"({"signal":"WINCH"})", "input"},
      {bhttp::verb::delete_, "/sessions/{id}", "", "kill"},
  };
}

// Each right alone, on each route: allowed where the route needs it (or nothing), refused with
// 403 naming the right (or the admin token) everywhere else. The admin token is the control:
// it passes every route.
TEST_F(ScopeTest, EachRightOnEachRoute) {
  const std::vector<std::string> rights = {"read", "input", "kill", "create"};
  int cells = 0;
  for (const std::string& right : rights) {
    json body = {{"sessions", "owner:alice"}, {"rights", {right}}, {"ttlSeconds", 600}};
    if (right == "create") {
      body["presets"] = {"claude"};
      body["workspaces"] = {"/srv/ws/alice"};
    }
    const std::string token = MintToken(body);
    ASSERT_FALSE(token.empty());
    for (const RouteCase& rc : Routes()) {
      std::string path = rc.path;
      if (const size_t at = path.find("{id}"); at != std::string::npos) {
        path.replace(at, 4, Spawn({{"task", "idle"}, {"owner", "alice"}}));
      }
      SCOPED_TRACE(right + " token, " + std::string(bhttp::to_string(rc.method)) + " " + path);
      const auto r = Send(rc.method, path, token, rc.body);
      const json j = json::parse(r.body(), nullptr, false);
      ++cells;
      if (rc.needs.empty() || rc.needs == right) {
        EXPECT_NE(r.result_int(), 403) << r.body();
        EXPECT_NE(r.result_int(), 401) << r.body();
        EXPECT_NE(r.result_int(), 404) << r.body();
        EXPECT_NE(r.result_int(), 0);
      } else {
        EXPECT_EQ(r.result_int(), 403) << r.body();
        EXPECT_EQ(j.value("code", ""), "forbidden");
        const std::string want = rc.needs == "admin" ? "admin token" : "the " + rc.needs + " right";
        EXPECT_NE(j.value("error", "").find(want), std::string::npos) << r.body();
      }
    }
  }
  for (const RouteCase& rc : Routes()) {
    std::string path = rc.path;
    if (const size_t at = path.find("{id}"); at != std::string::npos) {
      path.replace(at, 4, Spawn({{"task", "idle"}, {"owner", "alice"}}));
    }
    const auto r = Send(rc.method, path, kAdmin, rc.body);
    EXPECT_NE(r.result_int(), 403) << path << " " << r.body();
    EXPECT_NE(r.result_int(), 401) << path;
    ++cells;
  }
  EXPECT_EQ(cells, 5 * 22);
}

TEST_F(ScopeTest, SessionsOutsideTheScopeAreUnknown) {
  const std::string mine = Spawn({{"task", "idle"}, {"owner", "alice"}});
  const std::string theirs = Spawn({{"task", "idle"}, {"owner", "bob"}});
  const std::string token = MintToken(
      {{"sessions", "owner:alice"}, {"rights", {"read", "input", "kill"}}, {"ttlSeconds", 600}});
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + mine, token).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + theirs, token).result_int(), 404);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/s-nosuch", token).result_int(), 404);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + theirs + "/output", token).result_int(), 404);
  // Input keeps the original's answer for an unknown session.
  auto in = Send(bhttp::verb::post, "/sessions/" + theirs + "/input", token, R"({"input":"x"})");
  EXPECT_EQ(in.result_int(), 400);
  EXPECT_EQ(Send(bhttp::verb::delete_, "/sessions/" + theirs, token).result_int(), 404);
  EXPECT_FALSE(fake_.Info(theirs)->end.has_value()) << "an out-of-scope kill went through";
  // Control: the admin kills it.
  EXPECT_EQ(Send(bhttp::verb::delete_, "/sessions/" + theirs, kAdmin).result_int(), 200);

  // The list shows only the scope's sessions, whatever the query asks.
  auto list = json::parse(Send(bhttp::verb::get, "/sessions", token).body());
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], mine);
  auto other = json::parse(Send(bhttp::verb::get, "/sessions?owner=bob", token).body());
  EXPECT_TRUE(other.is_array() && other.empty());
  auto all = json::parse(Send(bhttp::verb::get, "/sessions", kAdmin).body());
  EXPECT_EQ(all.size(), 2u);
}

TEST_F(ScopeTest, SessionAndLabelScopes) {
  const std::string a =
      Spawn({{"task", "idle"}, {"labels", {"Team=Red"}}, {"cwd", "/srv/ws/red/a"}});
  const std::string b = Spawn({{"task", "idle"}, {"labels", {"team=blue"}}});
  const std::string one =
      MintToken({{"sessions", "session:" + b}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + b, one).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + a, one).result_int(), 404);
  auto list = json::parse(Send(bhttp::verb::get, "/sessions", one).body());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], b);

  const std::string red = MintToken({{"sessions", "label:team=red"},
                                     {"rights", {"read", "create"}},
                                     {"presets", {"claude"}},
                                     {"workspaces", {"/srv/ws/red"}},
                                     {"ttlSeconds", 600}});
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + a, red).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + b, red).result_int(), 404);
  // A session it creates carries its label, and is then in its scope.
  auto created = Send(bhttp::verb::post, "/sessions", red,
                      R"({"task":"idle","mode":"print","preset":"claude"})");
  ASSERT_EQ(created.result_int(), 201) << created.body();
  const std::string c = json::parse(created.body()).value("id", "");
  const auto info = fake_.Info(c);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->labels, (std::vector<std::string>{"team=red"}));
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + c, red).result_int(), 200);
  EXPECT_EQ(json::parse(Send(bhttp::verb::get, "/sessions", red).body()).size(), 2u);
}

TEST_F(ScopeTest, CreateIsLimitedToPresetsAndOwner) {
  const std::string token = MintToken({{"sessions", "owner:alice"},
                                       {"rights", {"create"}},
                                       {"presets", {"claude"}},
                                       {"workspaces", {"/srv/ws/alice"}},
                                       {"ttlSeconds", 600}});
  auto other_preset = Send(bhttp::verb::post, "/sessions", token,
                           R"({"task":"x","mode":"interactive","preset":"codex"})");
  EXPECT_EQ(other_preset.result_int(), 403);
  EXPECT_EQ(json::parse(other_preset.body()).value("field", ""), "/preset");
  auto no_preset = Send(bhttp::verb::post, "/sessions", token, R"({"task":"x"})");
  EXPECT_EQ(no_preset.result_int(), 403);
  auto other_owner = Send(bhttp::verb::post, "/sessions", token,
                          R"({"task":"x","mode":"print","preset":"claude","owner":"bob"})");
  EXPECT_EQ(other_owner.result_int(), 403);
  EXPECT_EQ(json::parse(other_owner.body()).value("field", ""), "/owner");
  auto ok = Send(bhttp::verb::post, "/sessions", token,
                 R"({"task":"x","mode":"print","preset":"claude"})");
  ASSERT_EQ(ok.result_int(), 201) << ok.body();
  EXPECT_EQ(fake_.Info(json::parse(ok.body()).value("id", ""))->owner, "alice");
  // Control: the admin spawns the refused ones.
  EXPECT_EQ(Send(bhttp::verb::post, "/sessions", kAdmin,
                 R"({"task":"x","mode":"interactive","preset":"codex"})")
                .result_int(),
            201);
}

// A create token's workspaces go to the supervisor with each of its spawns (cwd_within),
// which enforces them while it resolves the cwd (supervisor side: policy_test's
// ResolveWorkspaceTest.CwdWithin*; end to end: api_e2e_test). Control: the admin's spawn
// carries no limit.
TEST_F(ScopeTest, CreateCarriesTheTokensWorkspacesToTheSupervisor) {
  const json minted = Mint({{"sessions", "owner:ci"},
                            {"rights", {"read", "create"}},
                            {"presets", {"claude"}},
                            {"workspaces", {"/srv/ws/ci", "/srv/ws/ci-b"}},
                            {"ttlSeconds", 600}});
  EXPECT_EQ(minted["workspaces"], json({"/srv/ws/ci", "/srv/ws/ci-b"}));
  const std::string token = minted.value("token", "");
  auto ok = Send(bhttp::verb::post, "/sessions", token,
                 R"({"task":"x","mode":"print","preset":"claude","cwd":"/srv/ws/other"})");
  ASSERT_EQ(ok.result_int(), 201) << ok.body();  // the fake does not resolve; monkeyproofd does
  EXPECT_EQ(fake_.last_spawn_cwd_within(),
            (std::vector<std::string>{"/srv/ws/ci", "/srv/ws/ci-b"}));
  const json listed = json::parse(Send(bhttp::verb::get, "/tokens", kAdmin).body());
  ASSERT_EQ(listed["tokens"].size(), 1u);
  EXPECT_EQ(listed["tokens"][0]["workspaces"], json({"/srv/ws/ci", "/srv/ws/ci-b"}));

  ASSERT_EQ(Send(bhttp::verb::post, "/sessions", kAdmin,
                 R"({"task":"x","mode":"print","preset":"claude","cwd":"/srv/ws/other"})")
                .result_int(),
            201);
  EXPECT_TRUE(fake_.last_spawn_cwd_within().empty());
}

// A token with workspaces reaches only the sessions in them, even of its own owner (review
// rev17b, finding 1): a session of owner ci in a sibling workspace is unknown to it, in the
// list too. Control: the same token without workspaces (read only) reaches both.
TEST_F(ScopeTest, AWorkspaceTokenReachesOnlySessionsInItsWorkspaces) {
  const std::string inside = Spawn({{"task", "idle"}, {"owner", "ci"}, {"cwd", "/srv/ws/a/p"}});
  const std::string sibling = Spawn({{"task", "idle"}, {"owner", "ci"}, {"cwd", "/srv/ws/ab"}});
  const std::string token = MintToken({{"sessions", "owner:ci"},
                                       {"rights", {"read", "input", "create"}},
                                       {"presets", {"claude"}},
                                       {"workspaces", {"/srv/ws/a"}},
                                       {"ttlSeconds", 600}});
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + inside, token).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + sibling, token).result_int(), 404);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + sibling + "/output", token).result_int(), 404);
  EXPECT_EQ(Send(bhttp::verb::post, "/sessions/" + sibling + "/input", token, R"({"input":"x"})")
                .result_int(),
            400);
  auto list = json::parse(Send(bhttp::verb::get, "/sessions", token).body());
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["id"], inside);

  const std::string reader =
      MintToken({{"sessions", "owner:ci"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + sibling, reader).result_int(), 200);
  EXPECT_EQ(json::parse(Send(bhttp::verb::get, "/sessions", reader).body()).size(), 2u);
}

// A create token minted before tokens carried workspaces (its record has none) may not
// create: it would have no limit. It keeps its other rights.
TEST_F(ScopeTest, LegacyCreateTokenMayNotCreate) {
  StopServer();
  std::string token;
  {
    auto store = TokenStore::Open({dir_.path() + "/tokens.json", 3600, 8});
    ASSERT_TRUE(store) << store.error().ToString();
    TokenScope scope;
    scope.sessions = {SessionScope::Kind::kOwner, "ci"};
    scope.rights = static_cast<Rights>(Right::kCreate) | static_cast<Rights>(Right::kRead);
    scope.presets = {"claude"};
    auto m = store->Mint(scope, 600, "admin", WallClockMs());
    ASSERT_TRUE(m) << m.error().ToString();
    token = m->token;
  }
  std::ifstream file(dir_.path() + "/tokens.json");
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  ASSERT_NE(text.find("\"create\""), std::string::npos);
  ASSERT_EQ(text.find("workspaces"), std::string::npos) << text;
  StartServer();
  const uint64_t spawns = fake_.requests(wire::RequestType::kSpawn);
  auto r = Send(bhttp::verb::post, "/sessions", token,
                R"({"task":"x","mode":"print","preset":"claude"})");
  EXPECT_EQ(r.result_int(), 403) << r.body();
  EXPECT_NE(r.body().find("mint a new token"), std::string::npos) << r.body();
  EXPECT_EQ(fake_.requests(wire::RequestType::kSpawn), spawns);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", token).result_int(), 200);
}

// A supervisor before protocol 4 cannot enforce workspaces: a limited create is refused with
// 503 and never sent (the supervisor would otherwise be asked without the limit). Control:
// the admin's create, which has no limit, goes through to the same supervisor.
TEST_F(ScopeTest, AnOlderSupervisorGetsNoWorkspaceLimitedCreate) {
  StopServer();
  fake_.Stop();
  fake_.SetProto(3);
  ASSERT_TRUE(fake_.Start());
  StartServer();
  const std::string token = MintToken({{"sessions", "owner:ci"},
                                       {"rights", {"create"}},
                                       {"presets", {"claude"}},
                                       {"workspaces", {"/srv/ws/ci"}},
                                       {"ttlSeconds", 600}});
  ASSERT_FALSE(token.empty());
  const uint64_t spawns = fake_.requests(wire::RequestType::kSpawn);
  auto r = Send(bhttp::verb::post, "/sessions", token,
                R"({"task":"x","mode":"print","preset":"claude"})");
  EXPECT_EQ(r.result_int(), 503) << r.body();
  EXPECT_NE(r.body().find("upgrade monkeyproofd"), std::string::npos) << r.body();
  EXPECT_EQ(fake_.requests(wire::RequestType::kSpawn), spawns);
  EXPECT_EQ(fake_.last_envelope(wire::RequestType::kSpawn).find("cwd_within"), std::string::npos);
  EXPECT_EQ(Send(bhttp::verb::post, "/sessions", kAdmin,
                 R"({"task":"x","mode":"print","preset":"claude"})")
                .result_int(),
            201);
  EXPECT_EQ(fake_.requests(wire::RequestType::kSpawn), spawns + 1);
}

TEST_F(ScopeTest, ScopedTokensCannotMint) {
  const std::string token = MintToken({{"sessions", "owner:alice"},
                                       {"rights", {"read", "input", "kill", "create"}},
                                       {"presets", {"claude"}},
                                       {"workspaces", {"/srv/ws/alice"}},
                                       {"ttlSeconds", 600}});
  auto r = Send(bhttp::verb::post, "/tokens", token,
                R"({"sessions":"owner:alice","rights":["read"],"ttlSeconds":60})");
  EXPECT_EQ(r.result_int(), 403);
  EXPECT_NE(r.body().find("admin token"), std::string::npos);
}

TEST_F(ScopeTest, MintListRevokeAndTheStoreFile) {
  const json minted =
      Mint({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  const std::string token = minted.value("token", "");
  const std::string id = minted.value("id", "");
  ASSERT_EQ(ScopedTokenId(token), id);
  EXPECT_EQ(minted["rights"], json({"read"}));
  EXPECT_EQ(minted["createdBy"], "admin");
  Mint({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 3601}}, 400);

  auto list = Send(bhttp::verb::get, "/tokens", kAdmin);
  ASSERT_EQ(list.result_int(), 200);
  const std::string secret = token.substr(token.size() - kTokenSecretChars);
  EXPECT_EQ(list.body().find(secret), std::string::npos) << "GET /tokens shows the secret";
  EXPECT_EQ(list.body().find("sha256"), std::string::npos);
  const json tokens = json::parse(list.body())["tokens"];
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0]["id"], id);
  EXPECT_EQ(tokens[0]["revoked"], false);

  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", token).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::delete_, "/tokens/" + id, kAdmin).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::delete_, "/tokens/ffffffffffffffff", kAdmin).result_int(), 404);
  auto refused = Send(bhttp::verb::get, "/sessions", token);
  EXPECT_EQ(refused.result_int(), 401);
  EXPECT_NE(refused.body().find("revoked"), std::string::npos);

  // Revocation survives a restart; an unrevoked token keeps working (control).
  const std::string kept =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  StopServer();
  StartServer();
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", token).result_int(), 401);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", kept).result_int(), 200);

  // A damaged store is a start error, not an empty store.
  StopServer();
  dir_.Write("tokens.json", "{\"format\":\"monkeyproof-tokens/1\",\"tokens\":[{}]}", 0600);
  auto tokens_set = TokenSet::FromTokens({std::string(kAdmin)});
  Server broken(Config(), std::move(*tokens_set));
  auto started = broken.Start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().what.find("damaged"), std::string::npos) << started.error().what;
}

TEST_F(ScopeTest, ExpiredTokenIsRefused) {
  const std::string token =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 1}});
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", token).result_int(), 200);  // control
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto r = Send(bhttp::verb::get, "/sessions", token);
  EXPECT_EQ(r.result_int(), 401);
  EXPECT_NE(r.body().find("expired"), std::string::npos);
  // A well-formed token nobody minted, and a minted one with one secret character changed.
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", "mpt_0123456789abcdef_" + std::string(43, 'a'))
                .result_int(),
            401);
}

TEST_F(ScopeTest, DisabledWithoutAStore) {
  StopServer();
  ApiConfig c = Config();
  c.token_store.clear();
  ASSERT_TRUE(TryStartServer(c));
  auto r = Send(bhttp::verb::post, "/tokens", kAdmin,
                R"({"sessions":"owner:alice","rights":["read"],"ttlSeconds":60})");
  EXPECT_EQ(r.result_int(), 503);
  EXPECT_NE(r.body().find("token_store"), std::string::npos);
}

// The input right on the WebSocket: a read-only token streams but cannot type; an input token
// (the control) can.
TEST_F(ScopeTest, WebSocketInputNeedsTheInputRight) {
  const std::string id = Spawn({{"task", "echo"}, {"owner", "alice"}});
  for (const bool with_input : {false, true}) {
    SCOPED_TRACE(with_input ? "input token" : "read-only token");
    json rights = {"read"};
    if (with_input) rights.push_back("input");
    const std::string token =
        MintToken({{"sessions", "owner:alice"}, {"rights", rights}, {"ttlSeconds", 600}});
    asio::io_context io;
    tcp::socket socket(io);
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    SetReceiveTimeout(socket.native_handle(), 20);
    websocket::stream<tcp::socket&> ws(socket);
    ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& req) {
      req.set(bhttp::field::authorization, "Bearer " + token);
    }));
    beast::error_code ec;
    ws.handshake("127.0.0.1", "/sessions/" + id + "/ws", ec);
    ASSERT_FALSE(ec) << ec.message();
    beast::flat_buffer buf;
    ws.read(buf, ec);  // catchup
    ASSERT_FALSE(ec);
    buf.consume(buf.size());
    const std::string line = with_input ? "typed\n" : "refused\n";
    ws.write(asio::buffer(json({{"type", "stdin"}, {"data", line}}).dump()), ec);
    ASSERT_FALSE(ec);
    ws.read(buf, ec);
    ASSERT_FALSE(ec);
    const json m = json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
    if (with_input) {
      EXPECT_EQ(m.value("type", ""), "stdout") << m.dump();
      EXPECT_NE(fake_.StdinOf(id).find("typed"), std::string::npos);
    } else {
      EXPECT_EQ(m.value("type", ""), "error") << m.dump();
      EXPECT_NE(m.dump().find("input right"), std::string::npos) << m.dump();
      EXPECT_EQ(fake_.StdinOf(id).find("refused"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace mp::http
