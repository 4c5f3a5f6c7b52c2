// Version skew on the API's side (docs/protocol.md "Versions"): monkeyproof-api in process
// against the fake supervisor speaking version 1 (a monkeyproofd from before version 2, which
// answers a hello offering 2 with its own hello, an error and a close, and refuses version 2's
// members and audit actions by a table of its own) or version 2. Against version 1 the API
// connects again offering 1, then spawns, signals, sends input, kills and reads without `client`
// or `via` on the acting requests and without the new audit actions, writing one log line for
// the connection and no refusal; against version 2 it sends them all; and after the
// supervisor's upgrade (a restart) it speaks version 2 again. Requests come through a trusted
// proxy so that every request has a `via` to leave out.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/client_address.h"
#include "scope_fixture.h"

namespace mp::http {
namespace {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;
using scope_test::ApiFixture;
using scope_test::kAdmin;
using wire::AuditAction;
using wire::RequestType;

constexpr std::string_view kWrong = "mp-wrong-token-0123456789abcdefghijklmnop";

size_t Count(const std::string& haystack, std::string_view needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

class HttpProtoVersionTest : public ApiFixture {
 protected:
  void SetUp() override {}  // each test picks the fake's version first (Begin)

  void Begin(uint32_t supervisor_proto) {
    fake_.SetProto(supervisor_proto);
    ASSERT_TRUE(fake_.Start());
    ApiConfig c = Config();
    auto trusted = ParseNetworkList("127.0.0.1");
    ASSERT_TRUE(trusted);
    c.trusted_proxies = *trusted;
    ASSERT_TRUE(TryStartServer(std::move(c)));
    ASSERT_EQ(Send(bhttp::verb::get, "/readyz", kAdmin).result_int(), 200);
  }

  // A request from 203.0.113.9 through the trusted proxy (us, 127.0.0.1).
  scope_test::Response Proxied(bhttp::verb method, const std::string& target,
                               std::string_view token, const std::string& body = {}) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    boost::beast::error_code ec;
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
    scope_test::SetReceiveTimeout(socket.native_handle(), 20);
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set("X-Forwarded-For", "203.0.113.9");
    if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + std::string(token));
    if (!body.empty() || method == bhttp::verb::post) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
    }
    req.keep_alive(false);
    bhttp::write(socket, req, ec);
    boost::beast::flat_buffer buffer;
    scope_test::Response res;
    bhttp::read(socket, buffer, res, ec);
    if (ec) res.result(0);
    return res;
  }

  int64_t ProtocolOfVersion() {
    auto v = json::parse(Send(bhttp::verb::get, "/version", kAdmin).body(), nullptr, false);
    return v.value("protocol", int64_t{-1});
  }

  // Spawns, signals, sends input to and kills one session and reads it, all through the proxy;
  // each must succeed.
  void ActOnASession() {
    auto r = Proxied(bhttp::verb::post, "/sessions", kAdmin, R"({"task":"echo"})");
    ASSERT_EQ(r.result_int(), 201) << r.body();
    const std::string id = json::parse(r.body()).value("id", "");
    r = Proxied(bhttp::verb::post, "/sessions/" + id + "/input", kAdmin, R"({"input":"x"})");
    EXPECT_EQ(r.result_int(), 200) << r.body();
    r = Proxied(bhttp::verb::post, "/sessions/" + id + "/signal", kAdmin, R"({"signal":"INT"})");
    EXPECT_EQ(r.result_int(), 200) << r.body();
    r = Proxied(bhttp::verb::get, "/sessions/" + id + "/output", kAdmin);
    EXPECT_EQ(r.result_int(), 200) << r.body();
    r = Proxied(bhttp::verb::delete_, "/sessions/" + id, kAdmin);
    EXPECT_EQ(r.result_int(), 200) << r.body();
  }
};

TEST_F(HttpProtoVersionTest, AnOlderSupervisorIsSpokenToInVersion1AndServesEverything) {
  ::testing::internal::CaptureStderr();
  ASSERT_NO_FATAL_FAILURE(Begin(1));
  // The API offered 2, was answered 1 and closed, and came back offering 1.
  EXPECT_EQ(fake_.refused_hellos(), 1u);
  EXPECT_EQ(fake_.last_proto(), 1u);
  EXPECT_EQ(fake_.requests(RequestType::kHello), 1u);
  EXPECT_EQ(ProtocolOfVersion(), 1);

  ASSERT_NO_FATAL_FAILURE(ActOnASession());
  // Spawn's client was version 1's already; its via and the others' client/via are not sent.
  EXPECT_EQ(fake_.last_client(RequestType::kSpawn), "api:203.0.113.9");
  for (RequestType type :
       {RequestType::kSpawn, RequestType::kStdin, RequestType::kSignal, RequestType::kKill}) {
    const std::string envelope = fake_.last_envelope(type);
    ASSERT_FALSE(envelope.empty()) << ToString(type);
    EXPECT_EQ(envelope.find("\"via\""), std::string::npos) << envelope;
    EXPECT_NE(envelope.find("\"principal\":\"admin\""), std::string::npos) << envelope;
    if (type != RequestType::kSpawn) {
      EXPECT_EQ(envelope.find("\"client\""), std::string::npos) << envelope;
    }
  }
  // Refusals and reads are not audited by a version-1 supervisor; token operations are.
  EXPECT_EQ(Proxied(bhttp::verb::get, "/sessions", kWrong).result_int(), 401);
  auto r = Proxied(bhttp::verb::post, "/tokens", kAdmin,
                   R"({"sessions":"owner:alice","rights":["read"],"ttlSeconds":60})");
  ASSERT_EQ(r.result_int(), 201) << r.body();
  ASSERT_TRUE(fake_.WaitUntil(
      [](const testing::FakeSupervisor& f) { return f.requests(RequestType::kAudit) >= 1; },
      std::chrono::seconds(5)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // room for a stray line
  ASSERT_EQ(fake_.audits().size(), 1u);
  EXPECT_EQ(fake_.audits()[0].action, AuditAction::kTokenCreate);
  EXPECT_EQ(fake_.audits()[0].client, "api:203.0.113.9");
  EXPECT_EQ(fake_.last_envelope(RequestType::kAudit).find("\"via\""), std::string::npos);
  EXPECT_EQ(fake_.requests(RequestType::kAudit), 1u) << "a refused audit line was sent";
  EXPECT_EQ(fake_.requests(RequestType::kHello), 1u) << "the API reconnected";

  StopServer();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(Count(log, "event=supervisor_older proto=1 ours=5"), 1u) << log;
  EXPECT_NE(log.find("no read, auth_failed, rate_limited or audit_suppressed lines"),
            std::string::npos)
      << log;
  EXPECT_EQ(Count(log, "event=audit_failed"), 0u) << log;
}

TEST_F(HttpProtoVersionTest, ACurrentSupervisorGetsClientViaAndTheNewAuditActions) {
  ::testing::internal::CaptureStderr();
  ASSERT_NO_FATAL_FAILURE(Begin(5));
  EXPECT_EQ(fake_.refused_hellos(), 0u);
  EXPECT_EQ(fake_.last_proto(), 5u);
  EXPECT_EQ(ProtocolOfVersion(), 5);
  ASSERT_NO_FATAL_FAILURE(ActOnASession());
  for (RequestType type : {RequestType::kStdin, RequestType::kSignal, RequestType::kKill}) {
    EXPECT_EQ(fake_.last_client(type), "api:203.0.113.9") << ToString(type);
    EXPECT_EQ(fake_.last_via(type), "127.0.0.1") << ToString(type);
  }
  EXPECT_EQ(fake_.last_via(RequestType::kSpawn), "127.0.0.1");
  EXPECT_EQ(Proxied(bhttp::verb::get, "/sessions", kWrong).result_int(), 401);
  ASSERT_TRUE(fake_.WaitUntil(
      [](const testing::FakeSupervisor& f) {
        bool read = false;
        bool failed = false;
        for (const auto& a : f.audits()) {
          read = read || a.action == AuditAction::kRead;
          failed = failed || a.action == AuditAction::kAuthFailed;
        }
        return read && failed;
      },
      std::chrono::seconds(5)));
  StopServer();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(Count(log, "event=supervisor_older"), 0u) << log;
}

// The API is upgraded first, the supervisor later: once monkeyproofd restarts as the current
// version, the API speaks it without a restart of its own.
TEST_F(HttpProtoVersionTest, AfterTheSupervisorsUpgradeTheApiSpeaksTheCurrentVersionAgain) {
  ASSERT_NO_FATAL_FAILURE(Begin(1));
  EXPECT_EQ(ProtocolOfVersion(), 1);
  fake_.Stop();
  fake_.SetProto(5);
  ASSERT_TRUE(fake_.Start());
  ASSERT_TRUE(fake_.WaitUntil(
      [](const testing::FakeSupervisor& f) { return f.requests(RequestType::kHello) >= 2; },
      std::chrono::seconds(10)));
  EXPECT_EQ(fake_.last_proto(), 5u);
  EXPECT_EQ(fake_.refused_hellos(), 1u);  // only the first connection's
  for (int i = 0; i < 250 && ProtocolOfVersion() != 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ProtocolOfVersion(), 5);
  ASSERT_NO_FATAL_FAILURE(ActOnASession());
  EXPECT_EQ(fake_.last_via(RequestType::kKill), "127.0.0.1");
}

}  // namespace
}  // namespace mp::http
