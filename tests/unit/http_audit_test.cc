// The API's own audit lines (http/api_audit.h) through monkeyproof-api in process against the
// fake supervisor, which records the `audit` requests: every refused credential with its
// reason's class and never the credential, limiter refusals, a flood of either bounded per
// client address (control: each request of the flood was refused), reads of a session with
// principal, session and route, and "client X via peer Y" when a trusted proxy reported the
// client (control: the same header from a peer that is not trusted changes nothing).
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "scope_fixture.h"

namespace mp::http {
namespace {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;
using scope_test::ApiFixture;
using scope_test::kAdmin;
using wire::AuditAction;
using wire::AuditRequest;
using wire::AuthFailureReason;

class HttpAuditTest : public ApiFixture {
 protected:
  std::vector<AuditRequest> Audits(AuditAction action) const {
    std::vector<AuditRequest> out;
    for (const auto& a : fake_.audits()) {
      if (a.action == action) out.push_back(a);
    }
    return out;
  }
  // Waits until `n` audit requests of `action` have come (the API sends them after answering).
  std::vector<AuditRequest> WaitFor(AuditAction action, size_t n) const {
    (void)fake_.WaitUntil(
        [&](const testing::FakeSupervisor& f) {
          size_t k = 0;
          for (const auto& a : f.audits()) k += a.action == action ? 1 : 0;
          return k >= n;
        },
        std::chrono::seconds(5));
    return Audits(action);
  }
  void Restart(ApiConfig config) {
    StopServer();
    ASSERT_TRUE(TryStartServer(std::move(config)));
  }
  // Send with one extra header.
  scope_test::Response SendWith(bhttp::verb method, const std::string& target,
                                std::string_view token, const std::string& header,
                                const std::string& value, const std::string& body = {}) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    boost::beast::error_code ec;
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
    scope_test::SetReceiveTimeout(socket.native_handle(), 20);
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(header, value);
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
};

constexpr std::string_view kWrong = "mp-wrong-token-0123456789abcdefghijklmnop";

TEST_F(HttpAuditTest, EveryRefusedCredentialIsAuditedWithItsReasonNeverTheToken) {
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", kWrong).result_int(), 401);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/s-abc/output", "").result_int(), 401);
  const json minted = Mint({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 60}});
  const std::string token = minted.value("token", "");
  ASSERT_EQ(Send(bhttp::verb::delete_, "/tokens/" + minted.value("id", ""), kAdmin).result_int(),
            200);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", token).result_int(), 401);
  const auto failed = WaitFor(AuditAction::kAuthFailed, 3);
  ASSERT_EQ(failed.size(), 3u);
  EXPECT_EQ(failed[0].reason, AuthFailureReason::kInvalid);
  EXPECT_EQ(failed[0].route, "GET /sessions");
  EXPECT_EQ(failed[1].reason, AuthFailureReason::kMissing);
  EXPECT_EQ(failed[1].route, "GET /sessions/{id}/output");
  EXPECT_EQ(failed[2].reason, AuthFailureReason::kRevoked);
  for (const auto& a : failed) {
    EXPECT_EQ(a.client, "api:127.0.0.1");
    EXPECT_EQ(a.via, "");
    EXPECT_EQ(a.principal, "");  // nobody authenticated
    // Neither credential, nor any part of the scoped token's secret, travels.
    const std::string all = a.client + a.via + a.route + a.session + a.principal + a.token;
    EXPECT_EQ(all.find(kWrong), std::string::npos);
    EXPECT_EQ(all.find(token.substr(token.rfind('_') + 1)), std::string::npos);
  }
}

TEST_F(HttpAuditTest, AFloodOfFailuresIsBoundedPerClientAddress) {
  constexpr int kFlood = 40;
  int refused = 0;
  for (int i = 0; i < kFlood; ++i) {
    refused += Send(bhttp::verb::get, "/sessions", kWrong).result_int() == 401 ? 1 : 0;
  }
  EXPECT_EQ(refused, kFlood);  // control: every request of the flood was a failed auth
  const auto failed = WaitFor(AuditAction::kAuthFailed, 10);
  // A moment more for any line past the bound to arrive, were there one.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(Audits(AuditAction::kAuthFailed).size(), AuditThrottleLimits{}.lines_per_key);
}

TEST_F(HttpAuditTest, LimiterRefusalsAreAudited) {
  ApiConfig c = Config();
  c.auth_failures_per_minute = 2;
  Restart(c);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(Send(bhttp::verb::get, "/", kWrong).result_int(), 401);
  EXPECT_EQ(Send(bhttp::verb::get, "/", kWrong).result_int(), 429);
  const auto limited = WaitFor(AuditAction::kRateLimited, 1);
  ASSERT_EQ(limited.size(), 1u);
  EXPECT_EQ(limited[0].client, "api:127.0.0.1");
  EXPECT_EQ(limited[0].route, "GET /");
  // A valid credential is let in and is not a refusal (the limiter fix): nothing more.
  EXPECT_EQ(Send(bhttp::verb::get, "/", kAdmin).result_int(), 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(Audits(AuditAction::kRateLimited).size(), 1u);
}

TEST_F(HttpAuditTest, ReadsOfASessionAreAuditedWithPrincipalSessionAndRoute) {
  const std::string id = Spawn({{"task", "idle"}, {"owner", "alice"}});
  ASSERT_FALSE(id.empty());
  const json minted = Mint({{"sessions", "owner:alice"}, {"rights", {"read"}}, {"ttlSeconds", 60}});
  const std::string token = minted.value("token", "");
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + id, kAdmin).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + id + "/output", token).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions/" + id + "/transcript", token).result_int(), 200);
  // Control: a list and a health check are no read of a session.
  EXPECT_EQ(Send(bhttp::verb::get, "/sessions", kAdmin).result_int(), 200);
  EXPECT_EQ(Send(bhttp::verb::get, "/health", kAdmin).result_int(), 200);
  const auto reads = WaitFor(AuditAction::kRead, 3);
  ASSERT_EQ(reads.size(), 3u);
  EXPECT_EQ(reads[0].principal, "admin");
  EXPECT_EQ(reads[0].route, "GET /sessions/{id}");
  EXPECT_EQ(reads[1].principal, "token:" + minted.value("id", ""));
  EXPECT_EQ(reads[1].route, "GET /sessions/{id}/output");
  EXPECT_EQ(reads[2].route, "GET /sessions/{id}/transcript");
  for (const auto& r : reads) {
    EXPECT_EQ(r.session, id);
    EXPECT_EQ(r.client, "api:127.0.0.1");
  }
}

TEST_F(HttpAuditTest, ATrustedProxysClientIsAuditedViaTheProxy) {
  ApiConfig c = Config();
  auto trusted = ParseNetworkList("127.0.0.1");
  ASSERT_TRUE(trusted);
  c.trusted_proxies = *trusted;
  Restart(c);
  auto r = SendWith(bhttp::verb::post, "/sessions", kAdmin, "X-Forwarded-For", "203.0.113.9",
                    R"({"task":"idle"})");
  ASSERT_EQ(r.result_int(), 201) << r.body();
  const std::string id = json::parse(r.body()).value("id", "");
  EXPECT_EQ(fake_.last_client(wire::RequestType::kSpawn), "api:203.0.113.9");
  EXPECT_EQ(fake_.last_via(wire::RequestType::kSpawn), "127.0.0.1");
  ASSERT_EQ(
      SendWith(bhttp::verb::delete_, "/sessions/" + id, kAdmin, "X-Forwarded-For", "203.0.113.9")
          .result_int(),
      200);
  EXPECT_EQ(fake_.last_client(wire::RequestType::kKill), "api:203.0.113.9");
  EXPECT_EQ(fake_.last_via(wire::RequestType::kKill), "127.0.0.1");
  EXPECT_EQ(SendWith(bhttp::verb::get, "/", kWrong, "X-Forwarded-For", "198.51.100.4").result_int(),
            401);
  const auto failed = WaitFor(AuditAction::kAuthFailed, 1);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].client, "api:198.51.100.4");
  EXPECT_EQ(failed[0].via, "127.0.0.1");
}

TEST_F(HttpAuditTest, ControlAnUntrustedPeersHeaderIsNotBelieved) {
  auto r = SendWith(bhttp::verb::post, "/sessions", kAdmin, "X-Forwarded-For", "203.0.113.9",
                    R"({"task":"idle"})");
  ASSERT_EQ(r.result_int(), 201) << r.body();
  EXPECT_EQ(fake_.last_client(wire::RequestType::kSpawn), "api:127.0.0.1");
  EXPECT_EQ(fake_.last_via(wire::RequestType::kSpawn), "");
}

}  // namespace
}  // namespace mp::http
