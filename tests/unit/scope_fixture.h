// The fixture of the scoped-token tests (http_scope_test.cc, http_ws_auth_test.cc):
// monkeyproof-api in process against the fake supervisor, one admin token, a token store in a
// mkdtemp directory, and a blocking HTTP client with a receive timeout. Test code only.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "fake_supervisor.h"
#include "http/server.h"
#include "temp_dir.h"

namespace mp::http::scope_test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using json = nlohmann::json;
using Response = bhttp::response<bhttp::string_body>;

constexpr std::string_view kAdmin = "mp-scope-test-admin-0123456789abcdefghij";  // 40 chars

// Blocking reads on `fd` fail after `seconds` instead of hanging the test.
inline void SetReceiveTimeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

class ApiFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fake_.Start());
    StartServer();
  }
  void TearDown() override {
    StopServer();
    fake_.Stop();
  }

  ApiConfig Config() const {
    ApiConfig c;
    c.listen = {{"127.0.0.1", 0}};
    c.control_socket = fake_.socket_path();
    c.auth_failures_per_minute = 100'000;
    c.token_store = dir_.path() + "/tokens.json";
    c.token_max_ttl_seconds = 3600;
    return c;
  }

  Result<void> TryStartServer(ApiConfig config) {
    auto tokens = TokenSet::FromTokens({std::string(kAdmin)});
    EXPECT_TRUE(tokens);
    server_ = std::make_unique<Server>(std::move(config), std::move(*tokens));
    MP_RETURN_IF_ERROR(server_->Start());
    port_ = server_->endpoints()[0].port();
    thread_ = std::thread([s = server_.get()] { s->Run(); });
    for (int i = 0; i < 250 && Send(bhttp::verb::get, "/readyz", kAdmin).result_int() != 200; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return Ok();
  }
  void StartServer() { ASSERT_TRUE(TryStartServer(Config())); }
  void StopServer() {
    if (!server_) return;
    server_->Stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  Response Send(bhttp::verb method, const std::string& target, std::string_view token,
                const std::string& body = {}) {
    asio::io_context io;
    tcp::socket socket(io);
    beast::error_code ec;
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
    SetReceiveTimeout(socket.native_handle(), 20);
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + std::string(token));
    if (!body.empty() || method == bhttp::verb::post) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
    }
    req.keep_alive(false);
    bhttp::write(socket, req, ec);
    beast::flat_buffer buffer;
    Response res;
    bhttp::read(socket, buffer, res, ec);
    if (ec) res.result(0);
    return res;
  }

  // A session of the admin's; "" on failure.
  std::string Spawn(const json& body) {
    auto r = Send(bhttp::verb::post, "/sessions", kAdmin, body.dump());
    EXPECT_EQ(r.result_int(), 201) << r.body();
    return json::parse(r.body(), nullptr, false).value("id", "");
  }

  // Mints through the API; returns the whole answer.
  json Mint(const json& body, int want_status = 201) {
    auto r = Send(bhttp::verb::post, "/tokens", kAdmin, body.dump());
    EXPECT_EQ(r.result_int(), want_status) << body.dump() << " -> " << r.body();
    return json::parse(r.body(), nullptr, false);
  }
  std::string MintToken(const json& body) { return Mint(body).value("token", ""); }

  test::TempDir dir_{"scope-test"};
  testing::FakeSupervisor fake_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace mp::http::scope_test
