// Version skew on the supervisor's side of the control socket (docs/protocol.md "Versions"):
// ControlServer speaks versions 1 and 2. A version-1 peer (an API from before version 2) gets a
// version-1 hello and has its requests read as version 1 reads them: a member or audit action
// of version 2 is refused as bad_request naming it, and never reaches the handler; its plain
// requests are served. A version-2 peer's new members reach the handler. Control for each
// refusal: the same request from a version-2 peer is handed on.
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "common/messages.h"
#include "control_server_fixture.h"

namespace mp::supervisor::control_test {
namespace {

wire::KillRequest KillVia() {
  wire::KillRequest k{"s-abc"};
  k.principal = "admin";
  k.client = "api:203.0.113.9";
  k.via = "127.0.0.1";
  return k;
}

wire::AuditRequest ReadAudit() {
  wire::AuditRequest a;
  a.action = wire::AuditAction::kRead;
  a.principal = "admin";
  a.client = "api:127.0.0.1";
  a.session = "s-abc";
  a.route = "GET /sessions/{id}";
  return a;
}

class ControlProtoVersionTest : public ControlServerTest {
 protected:
  // Sends `body` as request `id` and returns the answer.
  std::optional<wire::Response> Ask(Client& client, uint64_t id, wire::RequestBody body) {
    client.SendRequest(wire::Request{id, std::move(body)});
    return client.ReceiveResponse();
  }
};

TEST_F(ControlProtoVersionTest, AVersion1PeerIsServedAndItsVersion2MembersAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  auto hello = client.Hello(1);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->proto, 1u);  // an older API checks that it equals its own
  // What an API of version 1 sends is served: a spawn with its client, a kill with a principal
  // only, a token audit.
  wire::SpawnRequest plain_spawn;
  plain_spawn.task = "idle";
  plain_spawn.client = "api:127.0.0.1";
  plain_spawn.principal = "admin";
  wire::KillRequest plain_kill{"s-abc"};
  plain_kill.principal = "admin";
  wire::AuditRequest plain_token;
  plain_token.action = wire::AuditAction::kTokenCreate;
  plain_token.principal = "admin";
  plain_token.token = "0123456789abcdef";
  plain_token.client = "api:127.0.0.1";
  uint64_t id = 0;
  for (const wire::RequestBody& body :
       {wire::RequestBody(plain_spawn), wire::RequestBody(plain_kill),
        wire::RequestBody(plain_token)}) {
    auto r = Ask(client, ++id, body);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->ok());
  }
  auto seen = handler_.requests();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(std::get<wire::KillRequest>(seen[1].request.body), plain_kill);

  // Version 2's members and actions are refused by name and never reach the handler.
  struct Case {
    wire::RequestBody body;
    std::string field;
  };
  wire::SpawnRequest spawn;
  spawn.task = "idle";
  spawn.client = "api:203.0.113.9";
  spawn.via = "127.0.0.1";
  wire::SignalRequest signal{"s-abc", 2};
  signal.via = "127.0.0.1";
  wire::AuditRequest token;
  token.action = wire::AuditAction::kTokenRevoke;
  token.principal = "admin";
  token.token = "0123456789abcdef";
  token.client = "api:203.0.113.9";
  token.via = "127.0.0.1";
  const Case cases[] = {{KillVia(), "/client"},
                        {signal, "/via"},
                        {spawn, "/via"},
                        {ReadAudit(), "/action"},
                        {token, "/via"}};
  for (const Case& c : cases) {
    auto r = Ask(client, ++id, c.body);
    const wire::ErrorBody* error = ErrorOf(r);
    ASSERT_NE(error, nullptr) << c.field;
    EXPECT_EQ(r->id, id);
    EXPECT_EQ(error->code, wire::ErrorCode::kBadRequest);
    EXPECT_EQ(error->field, c.field);
    EXPECT_NE(error->message.find("protocol version 1"), std::string::npos) << error->message;
  }
  EXPECT_EQ(handler_.requests().size(), 3u);
  // The connection stays: a refusal is an answer, not a protocol error.
  auto r = Ask(client, 99, wire::HealthRequest{});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(ConnectionCount(), 1u);
}

TEST_F(ControlProtoVersionTest, AVersion2PeersNewMembersAndActionsReachTheHandler) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  Client client(path_);
  auto hello = client.Hello(2);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->proto, 2u);
  auto r = Ask(client, 1, KillVia());
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  r = Ask(client, 2, ReadAudit());
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  const auto seen = handler_.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(std::get<wire::KillRequest>(seen[0].request.body), KillVia());
  EXPECT_EQ(std::get<wire::AuditRequest>(seen[1].request.body), ReadAudit());
}

// cwd_within (version 4): a version-3 peer that sends it is refused by name, and the request
// never reaches the handler (it would otherwise run with the limit, but such a peer cannot
// have meant one). Control: a version-4 peer's spawn with cwd_within reaches the handler whole.
TEST_F(ControlProtoVersionTest, CwdWithinIsVersion4s) {
  ASSERT_NO_FATAL_FAILURE(StartServer(Options()));
  wire::SpawnRequest spawn;
  spawn.task = "idle";
  spawn.client = "api:127.0.0.1";
  spawn.principal = "token:0123456789abcdef";
  spawn.cwd_within = {"/srv/ws/ci"};
  Client old_api(path_);
  auto hello = old_api.Hello(3);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->proto, 3u);
  auto r = Ask(old_api, 1, spawn);
  const wire::ErrorBody* error = ErrorOf(r);
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->code, wire::ErrorCode::kBadRequest);
  EXPECT_EQ(error->field, "/cwd_within");
  EXPECT_TRUE(handler_.requests().empty());

  Client api(path_);
  hello = api.Hello(4);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->proto, 4u);
  r = Ask(api, 2, spawn);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok());
  const auto seen = handler_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(std::get<wire::SpawnRequest>(seen[0].request.body).cwd_within, spawn.cwd_within);
}

}  // namespace
}  // namespace mp::supervisor::control_test
