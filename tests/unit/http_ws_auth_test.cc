// WebSocket auth without the URL (docs/api.md "WebSocket auth"), in process against the fake
// supervisor: the token in the `monkeyproof.bearer.<token>` subprotocol (only `monkeyproof` is
// echoed), and as the first message after an upgrade that offers `monkeyproof` and no token
// (nothing is sent before it; a wrong, missing or late one closes with 1008). Each has its
// control: the same upgrade without the token is refused. No root.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>

#include "scope_fixture.h"
#include "ws_test_client.h"

namespace mp::http {
namespace {

namespace websocket = boost::beast::websocket;
using scope_test::ApiFixture;
using scope_test::json;
using scope_test::kAdmin;
using scope_test::Ws;
using scope_test::asio::ip::tcp;
namespace asio = scope_test::asio;
namespace beast = scope_test::beast;
namespace bhttp = scope_test::bhttp;

constexpr std::string_view kWrong = "mp-scope-test-admin-0123456789abcdefghiX";

using WsAuthTest = ApiFixture;

TEST_F(WsAuthTest, TokenInTheSubprotocol) {
  const std::string id = Spawn({{"task", "idle"}});
  const std::string target = "/sessions/" + id + "/ws";
  Ws ws(port_, target, "monkeyproof, monkeyproof.bearer." + std::string(kAdmin));
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ(ws.protocol(), "monkeyproof");  // never the one with the token
  EXPECT_EQ(ws.Read().value("type", ""), "catchup");
  // Controls: a wrong token there, and none at all (without `monkeyproof` offered: a plain
  // upgrade, refused as before).
  Ws wrong(port_, target, "monkeyproof, monkeyproof.bearer." + std::string(kWrong));
  EXPECT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status(), 401);
  Ws none(port_, target, "");
  EXPECT_FALSE(none.ok());
  EXPECT_EQ(none.status(), 401);
  // A scoped token there is held to its scope.
  const std::string other = Spawn({{"task", "idle"}, {"owner", "bob"}});
  const std::string token =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  Ws scoped(port_, "/sessions/" + other + "/ws", "monkeyproof, monkeyproof.bearer." + token);
  EXPECT_FALSE(scoped.ok());
  EXPECT_EQ(scoped.status(), 404);
  // The header, when present, decides alone (a wrong header is not rescued by the protocol).
  Ws header_wins(port_, target, "monkeyproof, monkeyproof.bearer." + std::string(kAdmin),
                 "Bearer " + std::string(kWrong));
  EXPECT_EQ(header_wins.status(), 401);
}

TEST_F(WsAuthTest, TokenAsTheFirstMessage) {
  const std::string id = Spawn({{"task", "echo"}, {"owner", "alice"}});
  const std::string target = "/sessions/" + id + "/ws";
  Ws ws(port_, target, "monkeyproof");
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ(ws.protocol(), "monkeyproof");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(ws.Pending(), 0u) << "the server sent something before the auth message";
  ws.Send(json({{"type", "auth"}, {"token", kAdmin}}).dump());
  EXPECT_EQ(ws.Read().value("type", ""), "catchup");
  ws.Send(R"({"type":"stdin","data":"hi\n"})");
  EXPECT_EQ(ws.Read().value("type", ""), "stdout");
  EXPECT_NE(fake_.StdinOf(id).find("hi"), std::string::npos);

  // A read-only scoped token by message: streams, cannot type.
  const std::string token =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  Ws reader(port_, target, "monkeyproof");
  ASSERT_TRUE(reader.ok());
  reader.Send(json({{"type", "auth"}, {"token", token}}).dump());
  EXPECT_EQ(reader.Read().value("type", ""), "catchup");
  reader.Send(R"({"type":"stdin","data":"nope\n"})");
  const json refused = reader.Read();
  EXPECT_EQ(refused.value("type", ""), "error") << refused.dump();
  EXPECT_EQ(fake_.StdinOf(id).find("nope"), std::string::npos);
}

TEST_F(WsAuthTest, BadFirstMessagesCloseWith1008) {
  const std::string id = Spawn({{"task", "echo"}, {"owner", "bob"}});
  const std::string target = "/sessions/" + id + "/ws";
  const uint64_t gets = fake_.requests(wire::RequestType::kGet);
  {
    Ws wrong(port_, target, "monkeyproof");
    ASSERT_TRUE(wrong.ok());
    wrong.Send(json({{"type", "auth"}, {"token", kWrong}}).dump());
    EXPECT_TRUE(wrong.Read().is_null());
    EXPECT_EQ(wrong.close_code(), 1008);
  }
  {
    // Input before auth is not taken as input.
    Ws typed(port_, target, "monkeyproof");
    ASSERT_TRUE(typed.ok());
    typed.Send(R"({"type":"stdin","data":"sneaky\n"})");
    EXPECT_TRUE(typed.Read().is_null());
    EXPECT_EQ(typed.close_code(), 1008);
    EXPECT_EQ(fake_.StdinOf(id).find("sneaky"), std::string::npos);
  }
  // Nothing was looked up for them.
  EXPECT_EQ(fake_.requests(wire::RequestType::kGet), gets);
  {
    // A good token whose scope does not cover the session: the route's 404, then 1008.
    const std::string token =
        MintToken({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
    Ws outside(port_, target, "monkeyproof");
    ASSERT_TRUE(outside.ok());
    outside.Send(json({{"type", "auth"}, {"token", token}}).dump());
    const json error = outside.Read();
    EXPECT_EQ(error.value("type", ""), "error") << error.dump();
    EXPECT_EQ(error.value("status", 0), 404);
    EXPECT_TRUE(outside.Read().is_null());
    EXPECT_EQ(outside.close_code(), 1008);
  }
}

TEST_F(WsAuthTest, SilentClientIsClosedAtTheDeadline) {
  StopServer();
  ApiConfig c = Config();
  c.ws_auth_timeout_ms = 300;
  ASSERT_TRUE(TryStartServer(c));
  const std::string id = Spawn({{"task", "idle"}});
  Ws ws(port_, "/sessions/" + id + "/ws", "monkeyproof");
  ASSERT_TRUE(ws.ok());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(ws.Read().is_null());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// Review finding: connections waiting for their auth message left the per-address pre-auth
// count, so one address could hold the global cap with them. They now keep their slot until
// the message authenticates, and, as unauthenticated connections, are the ones evicted when the
// address's cap is full (the oldest first). Control: with preauth_eviction off, the new upgrade
// is refused instead.
TEST_F(WsAuthTest, WaitingForTheAuthMessageHoldsAPreauthSlot) {
  for (const bool evict : {true, false}) {
    SCOPED_TRACE(evict ? "preauth_eviction on" : "preauth_eviction off");
    StopServer();
    ApiConfig c = Config();
    c.max_preauth_connections_per_address = 3;
    c.preauth_eviction = evict;
    ASSERT_TRUE(TryStartServer(c));
    const std::string target = "/sessions/" + Spawn({{"task", "idle"}}) + "/ws";
    std::vector<std::unique_ptr<Ws>> waiting;
    for (int i = 0; i < 3; ++i) {
      waiting.push_back(std::make_unique<Ws>(port_, target, "monkeyproof"));
      ASSERT_TRUE(waiting.back()->ok()) << i << ": " << waiting.back()->status();
    }
    Ws fourth(port_, target, "monkeyproof");
    if (evict) {
      ASSERT_TRUE(fourth.ok()) << fourth.status();
      EXPECT_TRUE(waiting[0]->Read().is_null()) << "the oldest waiting upgrade was not closed";
      fourth.Send(json({{"type", "auth"}, {"token", kAdmin}}).dump());
      EXPECT_EQ(fourth.Read().value("type", ""), "catchup");
      continue;
    }
    EXPECT_FALSE(fourth.ok());
    EXPECT_EQ(fourth.status(), 503);
    // Control: once one of them has authenticated, its slot is free for another.
    waiting[0]->Send(json({{"type", "auth"}, {"token", kAdmin}}).dump());
    EXPECT_EQ(waiting[0]->Read().value("type", ""), "catchup");
    Ws fifth(port_, target, "monkeyproof");
    EXPECT_TRUE(fifth.ok()) << fifth.status();
  }
}

// Letting the deadline pass is a failed auth, as a wrong token is: two silent upgrades and the
// address has used its two failures (the wrong token after them is 429, where it would be the
// first failure and 401 if silence were free); a valid token still passes.
TEST_F(WsAuthTest, ADeadlinePassedCountsAsAFailedAuth) {
  StopServer();
  ApiConfig c = Config();
  c.ws_auth_timeout_ms = 200;
  c.auth_failures_per_minute = 2;
  ASSERT_TRUE(TryStartServer(c));
  const std::string target = "/sessions/" + Spawn({{"task", "idle"}}) + "/ws";
  for (int i = 0; i < 2; ++i) {
    Ws silent(port_, target, "monkeyproof");
    ASSERT_TRUE(silent.ok());
    EXPECT_TRUE(silent.Read().is_null());
  }
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", kWrong).result_int(), 429);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", kAdmin).result_int(), 200);
}

// A refused client that ignores the close (never answers the close frame) is dropped after the
// refusal's short deadline, not after the WebSocket handshake's 30 s.
TEST_F(WsAuthTest, ARefusedClientThatIgnoresTheCloseIsDropped) {
  const std::string target = "/sessions/" + Spawn({{"task", "idle"}}) + "/ws";
  Ws ws(port_, target, "monkeyproof");
  ASSERT_TRUE(ws.ok());
  ws.Send(json({{"type", "auth"}, {"token", kWrong}}).dump());
  EXPECT_TRUE(ws.ServerClosesWithin(std::chrono::seconds(10)));
}

// ?token= is for upgrades of /sessions/{id}/ws only: with upgrade headers on another route it
// is not taken (the admin token there would otherwise be in that URL's access log lines).
TEST_F(WsAuthTest, QueryTokenOnlyOnTheWebSocketRoute) {
  const std::string id = Spawn({{"task", "idle"}});
  Ws off_route(port_, "/tokens?token=" + std::string(kAdmin), "");
  EXPECT_EQ(off_route.status(), 401);
  // Control: the same token in the same place on the WebSocket route.
  Ws on_route(port_, "/sessions/" + id + "/ws?token=" + std::string(kAdmin), "");
  EXPECT_TRUE(on_route.ok()) << on_route.status();
}

}  // namespace
}  // namespace mp::http
