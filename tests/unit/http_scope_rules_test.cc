// The rules a scoped token's create and signal rights follow (docs/api.md "Scoped tokens"), in
// process against the fake supervisor: a create token plants no session into another token's
// scope (an owner: scope sets its owner and no labels; a label: scope sets its label and no
// owner), an input-only token cannot end a session with a signal (WINCH and CONT need input;
// every other signal needs kill as well), over HTTP, and a revocation the store could not
// write changes nothing. Each refusal has a control (the admin token, or a token with the
// right, does the same). No root needed.
#include <sys/stat.h>

#include <chrono>
#include <csignal>
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

#include "http/token_scope.h"
#include "scope_fixture.h"

namespace mp::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using asio::ip::tcp;
using json = nlohmann::json;
using scope_test::ApiFixture;
using scope_test::kAdmin;

json ClaudeSpawn(const json& extra) {
  json body = {{"task", "idle"}, {"mode", "print"}, {"preset", "claude"}};
  for (const auto& [k, v] : extra.items()) body[k] = v;
  return body;
}

class ScopeRulesTest : public ApiFixture {
 protected:
  // The ids a token's GET /sessions lists.
  std::vector<std::string> Listed(const std::string& token) {
    auto r = Send(bhttp::verb::get, "/sessions", token);
    EXPECT_EQ(r.result_int(), 200) << r.body();
    std::vector<std::string> ids;
    for (const auto& s : json::parse(r.body(), nullptr, false)) ids.push_back(s.value("id", ""));
    return ids;
  }
  std::string CreateToken(const std::string& sessions) {
    return MintToken({{"sessions", sessions},
                      {"rights", {"create", "read"}},
                      {"presets", {"claude"}},
                      {"workspaces", {"/srv/ws/ci"}},
                      {"ttlSeconds", 600}});
  }
};

// The review's probe: a label:ci create token spawned a session owned by alice and labelled
// prod, which then showed in owner:alice's and label:prod's lists.
TEST_F(ScopeRulesTest, LabelScopeSetsNoOwnerAndNoOtherLabel) {
  const std::string creator = CreateToken("label:ci");
  const std::string alice =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  const std::string prod =
      MintToken({{"sessions", "label:prod"}, {"rights", {"read"}}, {"ttlSeconds", 600}});

  auto owner =
      Send(bhttp::verb::post, "/sessions", creator, ClaudeSpawn({{"owner", "alice"}}).dump());
  EXPECT_EQ(owner.result_int(), 403) << owner.body();
  const json jo = json::parse(owner.body(), nullptr, false);
  EXPECT_EQ(jo.value("field", ""), "/owner");
  EXPECT_NE(jo.value("error", "").find("label:ci"), std::string::npos) << owner.body();

  auto label = Send(bhttp::verb::post, "/sessions", creator,
                    ClaudeSpawn({{"labels", {"ci", "Prod"}}}).dump());
  EXPECT_EQ(label.result_int(), 403) << label.body();
  const json jl = json::parse(label.body(), nullptr, false);
  EXPECT_EQ(jl.value("field", ""), "/labels");
  EXPECT_NE(jl.value("error", "").find("prod"), std::string::npos) << label.body();
  EXPECT_TRUE(Listed(alice).empty());
  EXPECT_TRUE(Listed(prod).empty());

  // Allowed: no labels (the scope's is added) or the scope's own label, in any spelling.
  for (const json& extra : {json::object(), json({{"labels", {" CI "}}})}) {
    auto ok = Send(bhttp::verb::post, "/sessions", creator, ClaudeSpawn(extra).dump());
    ASSERT_EQ(ok.result_int(), 201) << ok.body();
    const auto info = fake_.Info(json::parse(ok.body()).value("id", ""));
    ASSERT_TRUE(info);
    EXPECT_EQ(info->labels, std::vector<std::string>{"ci"});
    EXPECT_EQ(info->owner, "");
  }
  EXPECT_EQ(Listed(creator).size(), 2u);

  // Control: the admin token plants exactly that session, and both readers see it.
  Spawn(ClaudeSpawn({{"owner", "alice"}, {"labels", {"prod"}}}));
  EXPECT_EQ(Listed(alice).size(), 1u);
  EXPECT_EQ(Listed(prod).size(), 1u);
}

TEST_F(ScopeRulesTest, OwnerScopeSetsItsOwnerAndNoLabels) {
  const std::string creator = CreateToken("owner:ci");
  const std::string prod =
      MintToken({{"sessions", "label:prod"}, {"rights", {"read"}}, {"ttlSeconds", 600}});

  auto label =
      Send(bhttp::verb::post, "/sessions", creator, ClaudeSpawn({{"labels", {"prod"}}}).dump());
  EXPECT_EQ(label.result_int(), 403) << label.body();
  const json jl = json::parse(label.body(), nullptr, false);
  EXPECT_EQ(jl.value("field", ""), "/labels");
  EXPECT_NE(jl.value("error", "").find("owner:ci"), std::string::npos) << label.body();
  EXPECT_TRUE(Listed(prod).empty());

  auto other =
      Send(bhttp::verb::post, "/sessions", creator, ClaudeSpawn({{"owner", "alice"}}).dump());
  EXPECT_EQ(other.result_int(), 403) << other.body();
  const json jo = json::parse(other.body(), nullptr, false);
  EXPECT_EQ(jo.value("field", ""), "/owner");
  EXPECT_NE(jo.value("error", "").find("owner:ci"), std::string::npos) << other.body();

  // Allowed: no owner (the scope's is set) or the scope's owner, with no labels.
  for (const json& extra : {json::object(), json({{"owner", "ci"}, {"labels", json::array()}})}) {
    auto ok = Send(bhttp::verb::post, "/sessions", creator, ClaudeSpawn(extra).dump());
    ASSERT_EQ(ok.result_int(), 201) << ok.body();
    const auto info = fake_.Info(json::parse(ok.body()).value("id", ""));
    ASSERT_TRUE(info);
    EXPECT_EQ(info->owner, "ci");
    EXPECT_TRUE(info->labels.empty());
  }
  EXPECT_EQ(Listed(creator).size(), 2u);

  // Control: the admin token's labelled session is in label:prod's list.
  Spawn(ClaudeSpawn({{"owner", "ci"}, {"labels", {"prod"}}}));
  EXPECT_EQ(Listed(prod).size(), 1u);
}

// A session: scope can never create (refused at mint), so no spawn can leave it.
TEST_F(ScopeRulesTest, SessionScopeCannotCreate) {
  const std::string id = Spawn(ClaudeSpawn({}));
  const json refused = Mint({{"sessions", "session:" + id},
                             {"rights", {"create"}},
                             {"presets", {"claude"}},
                             {"workspaces", {"/srv/ws/ci"}},
                             {"ttlSeconds", 600}},
                            400);
  EXPECT_EQ(refused.value("field", ""), "/rights");
}

// The review's finding: an input-only token ended a session with {"signal":"KILL"}.
TEST_F(ScopeRulesTest, SignalsThatEndASessionNeedKill) {
  const std::string input =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"read", "input"}}, {"ttlSeconds", 600}});
  const std::string both = MintToken(
      {{"sessions", "owner:alice"}, {"rights", {"read", "input", "kill"}}, {"ttlSeconds", 600}});
  for (const std::string sig : {"KILL", "TERM", "INT", "HUP", "QUIT", "USR1", "STOP", "9", "34"}) {
    SCOPED_TRACE(sig);
    const std::string id = Spawn({{"task", "idle"}, {"owner", "alice"}});
    const std::string body = json({{"signal", sig}}).dump();
    auto r = Send(bhttp::verb::post, "/sessions/" + id + "/signal", input, body);
    EXPECT_EQ(r.result_int(), 403) << r.body();
    const json j = json::parse(r.body(), nullptr, false);
    EXPECT_EQ(j.value("field", ""), "/signal");
    EXPECT_NE(j.value("error", "").find("kill right"), std::string::npos) << r.body();
    EXPECT_TRUE(fake_.SignalsOf(id).empty());
    // Control: with kill as well, and as the admin, the signal is sent.
    EXPECT_EQ(Send(bhttp::verb::post, "/sessions/" + id + "/signal", both, body).result_int(), 200);
    EXPECT_EQ(Send(bhttp::verb::post, "/sessions/" + id + "/signal", kAdmin, body).result_int(),
              200);
    EXPECT_EQ(fake_.SignalsOf(id).size(), 2u);
  }
  // WINCH and CONT leave the session as it was: input alone sends them.
  const std::string id = Spawn({{"task", "idle"}, {"owner", "alice"}});
  for (const std::string sig : {"WINCH", "SIGCONT", "28"}) {
    auto r = Send(bhttp::verb::post, "/sessions/" + id + "/signal", input,
                  json({{"signal", sig}}).dump());
    EXPECT_EQ(r.result_int(), 200) << sig << " " << r.body();
  }
  EXPECT_EQ(fake_.SignalsOf(id), (std::vector<int32_t>{SIGWINCH, SIGCONT, SIGWINCH}));
  // kill without input still lacks the route's input right.
  const std::string kill_only =
      MintToken({{"sessions", "owner:alice"}, {"rights", {"kill"}}, {"ttlSeconds", 600}});
  auto k =
      Send(bhttp::verb::post, "/sessions/" + id + "/signal", kill_only, R"({"signal":"TERM"})");
  EXPECT_EQ(k.result_int(), 403);
  EXPECT_NE(k.body().find("input right"), std::string::npos) << k.body();
}

// A revocation the store could not write is a 500 that says the token still works, and it
// does (as it would after a restart); the retry once the store is writable revokes it.
TEST_F(ScopeRulesTest, FailedRevocationSaysNothingChanged) {
  const json minted =
      Mint({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 600}});
  const std::string token = minted.value("token", "");
  const std::string id = minted.value("id", "");
  const std::string tmp = dir_.path() + "/tokens.json.tmp";
  ASSERT_EQ(::mkdir(tmp.c_str(), 0700), 0);  // the store's temporary name taken: writes fail
  auto failed = Send(bhttp::verb::delete_, "/tokens/" + id, kAdmin);
  EXPECT_EQ(failed.result_int(), 500) << failed.body();
  EXPECT_NE(failed.body().find("NOT revoked"), std::string::npos) << failed.body();
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", token).result_int(), 200);
  const json listed = json::parse(Send(bhttp::verb::get, "/tokens", kAdmin).body());
  EXPECT_EQ(listed["tokens"][0].value("revoked", true), false);

  ASSERT_EQ(::rmdir(tmp.c_str()), 0);
  EXPECT_EQ(Send(bhttp::verb::delete_, "/tokens/" + id, kAdmin).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", token).result_int(), 401);
  StopServer();
  StartServer();
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", token).result_int(), 401);
}

// The same rule for the WebSocket's signal message: an input-only token's KILL is answered
// with an error naming the kill right and never reaches the session; WINCH goes through; a
// token with kill as well (the control) sends KILL.
TEST_F(ScopeRulesTest, WebSocketSignalsThatEndASessionNeedKill) {
  const std::string id = Spawn({{"task", "idle"}, {"owner", "alice"}});
  for (const bool with_kill : {false, true}) {
    SCOPED_TRACE(with_kill ? "input and kill" : "input only");
    json rights = {"read", "input"};
    if (with_kill) rights.push_back("kill");
    const std::string token =
        MintToken({{"sessions", "owner:alice"}, {"rights", rights}, {"ttlSeconds", 600}});
    asio::io_context io;
    tcp::socket socket(io);
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    scope_test::SetReceiveTimeout(socket.native_handle(), 20);
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
    const size_t before = fake_.SignalsOf(id).size();
    ws.write(asio::buffer(json({{"type", "signal"}, {"signal", "WINCH"}}).dump()), ec);
    ASSERT_FALSE(ec);
    ws.write(asio::buffer(json({{"type", "signal"}, {"signal", "KILL"}}).dump()), ec);
    ASSERT_FALSE(ec);
    if (!with_kill) {
      // A blocking Asio read ignores SO_RCVTIMEO: wait for bytes first, then read.
      for (int i = 0; i < 250 && socket.available() == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      ASSERT_GT(socket.available(), 0u) << "no answer to the refused KILL";
      ws.read(buf, ec);
      ASSERT_FALSE(ec) << ec.message();
      const json m = json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
      EXPECT_EQ(m.value("type", ""), "error") << m.dump();
      EXPECT_NE(m.value("error", "").find("kill right"), std::string::npos) << m.dump();
    }
    // Messages are handled in order: the error above came after WINCH's call; with kill, wait
    // for both calls.
    const size_t want_count = with_kill ? 2 : 1;
    for (int i = 0; i < 250 && fake_.SignalsOf(id).size() < before + want_count; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::vector<int32_t> sent = fake_.SignalsOf(id);
    sent.erase(sent.begin(), sent.begin() + static_cast<long>(before));
    const std::vector<int32_t> want =
        with_kill ? std::vector<int32_t>{SIGWINCH, SIGKILL} : std::vector<int32_t>{SIGWINCH};
    EXPECT_EQ(sent, want);
  }
}

// The shared check both signal paths (HTTP and the WebSocket) call.
TEST(SignalRight, OnlyWinchAndContNeedInputAlone) {
  int input_only = 0;
  for (int32_t sig = 1; sig <= 64; ++sig) {
    const Rights input = static_cast<Rights>(Right::kInput);
    const Rights input_kill = input | static_cast<Rights>(Right::kKill);
    EXPECT_FALSE(MissingSignalRight(input_kill, sig)) << sig;
    EXPECT_FALSE(MissingSignalRight(kAllRights, sig)) << sig;
    if (!MissingSignalRight(input, sig)) ++input_only;
  }
  EXPECT_EQ(input_only, 2);
  EXPECT_EQ(SignalRight(SIGKILL), Right::kKill);
  EXPECT_EQ(SignalRight(SIGWINCH), Right::kInput);
  const auto m = MissingSignalRight(static_cast<Rights>(Right::kInput), SIGTERM);
  ASSERT_TRUE(m);
  EXPECT_EQ(*m,
            "this token lacks the kill right, which signal 15 (TERM) needs; only WINCH and "
            "CONT need input alone");
}

}  // namespace
}  // namespace mp::http
