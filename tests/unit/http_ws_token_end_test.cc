// A scoped token's WebSockets end with the token (docs/api.md "Scoped tokens"), in process
// against the fake supervisor: DELETE /tokens/{id} closes every WebSocket that token opened at
// once (read-only ones too: output is a read right), and a token's expiry closes them when it
// comes; either way with an `error` message, then close code 1008 and the reason ("token
// revoked", "token expired"), and no input sent after it reaches the session. Each has its
// control: a WebSocket of another token, or of the admin, stays open and keeps its input. No
// root.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "scope_fixture.h"
#include "ws_test_client.h"

namespace mp::http {
namespace {

using scope_test::ApiFixture;
using scope_test::json;
using scope_test::kAdmin;
using scope_test::Ws;
namespace bhttp = scope_test::bhttp;

using WsTokenEndTest = ApiFixture;

// Reads until the server closes (skipping output), for at most 5 s; the last message before
// the close.
json ReadUntilClosed(Ws& ws) {
  json last = nullptr;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (int i = 0; i < 100; ++i) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    json m = ws.Read(std::max(left, std::chrono::milliseconds(1)));
    if (m.is_null()) return last;
    last = std::move(m);
  }
  return last;
}

// `j[key]` as text; "" when `j` is not an object (no message came) or has no such string.
std::string Member(const json& j, const char* key) { return j.is_object() ? j.value(key, "") : ""; }

// A WebSocket of `token` on `id`, past its catchup message.
std::unique_ptr<Ws> Open(uint16_t port, const std::string& id, const std::string& token) {
  auto ws = std::make_unique<Ws>(port, "/sessions/" + id + "/ws", "", "Bearer " + token);
  EXPECT_TRUE(ws->ok()) << ws->status();
  if (ws->ok()) {
    EXPECT_EQ(Member(ws->Read(), "type"), "catchup");
  }
  return ws;
}

TEST_F(WsTokenEndTest, RevocationClosesTheTokensWebSocketsAtOnce) {
  const std::string id = Spawn({{"task", "echo"}, {"owner", "alice"}});
  const json minted =
      Mint({{"sessions", "owner:alice"}, {"rights", {"read", "input"}}, {"ttlSeconds", 600}});
  const std::string token = minted.value("token", "");
  const json reader_minted =
      Mint({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  const std::string reader_token = reader_minted.value("token", "");
  const std::string other_token =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read", "input"}}, {"ttlSeconds", 600}});
  auto typist = Open(port_, id, token);
  auto typist2 = Open(port_, id, token);
  auto other = Open(port_, id, other_token);
  auto admin = Open(port_, id, std::string(kAdmin));
  // A read-only WebSocket of a token revoked the same way (output is a read right).
  auto reader = Open(port_, id, reader_token);

  auto r = Send(bhttp::verb::delete_, "/tokens/" + minted.value("id", ""), kAdmin);
  ASSERT_EQ(r.result_int(), 200) << r.body();
  // Input right after the revocation (without the fix it reaches the session).
  typist->Send(R"({"type":"stdin","data":"after-revoke\n"})");
  for (Ws* ws : {typist.get(), typist2.get()}) {
    const json last = ReadUntilClosed(*ws);
    EXPECT_EQ(ws->close_code(), 1008);
    EXPECT_EQ(ws->close_reason(), "token revoked");
    EXPECT_EQ(Member(last, "type"), "error") << last.dump();
    EXPECT_EQ(Member(last, "code"), "unauthorized") << last.dump();
  }
  r = Send(bhttp::verb::delete_, "/tokens/" + reader_minted.value("id", ""), kAdmin);
  ASSERT_EQ(r.result_int(), 200) << r.body();
  ReadUntilClosed(*reader);
  EXPECT_EQ(reader->close_code(), 1008);
  EXPECT_EQ(reader->close_reason(), "token revoked");

  // Controls: another token's WebSocket and the admin's are open and type.
  other->Send(R"({"type":"stdin","data":"other-still-types\n"})");
  EXPECT_EQ(Member(other->Read(), "type"), "stdout");
  admin->Send(R"({"type":"stdin","data":"admin-still-types\n"})");
  json echoed;
  do {
    echoed = admin->Read();
  } while (!echoed.is_null() && Member(echoed, "data").find("admin-still") == std::string::npos);
  EXPECT_FALSE(echoed.is_null());
  EXPECT_EQ(fake_.StdinOf(id).find("after-revoke"), std::string::npos)
      << "stdin of a revoked token reached the session";
  EXPECT_NE(fake_.StdinOf(id).find("other-still-types"), std::string::npos);
}

TEST_F(WsTokenEndTest, ExpiryClosesTheTokensWebSockets) {
  const std::string id = Spawn({{"task", "echo"}, {"owner", "alice"}});
  const std::string token =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read", "input"}}, {"ttlSeconds", 1}});
  const std::string lasting =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read", "input"}}, {"ttlSeconds", 600}});
  auto ws = Open(port_, id, token);
  auto control = Open(port_, id, lasting);
  // Input after the expiry (without the fix it reaches the session), then the close.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ws->Send(R"({"type":"stdin","data":"after-expiry\n"})");
  const json last = ReadUntilClosed(*ws);
  EXPECT_EQ(ws->close_code(), 1008);
  EXPECT_EQ(ws->close_reason(), "token expired");
  EXPECT_EQ(Member(last, "type"), "error") << last.dump();
  // Control: the token that has not expired still types.
  control->Send(R"({"type":"stdin","data":"lasting\n"})");
  EXPECT_EQ(Member(control->Read(), "type"), "stdout");
  EXPECT_EQ(fake_.StdinOf(id).find("after-expiry"), std::string::npos)
      << "stdin of an expired token reached the session";
}

}  // namespace
}  // namespace mp::http
