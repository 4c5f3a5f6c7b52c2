// monkeyproof-api in process (http/server.h) against a fake supervisor (fake_supervisor.h):
// routing, auth, the session routes, the WebSocket stream, flow control and the supervisor
// link's reconnects, seen from the outside through real TCP connections. The server runs on
// its own thread on 127.0.0.1 with port 0; the clients are synchronous Beast clients in the
// test thread. Every blocking client socket has a deadline that shuts it down, so a server
// that does not answer fails the test instead of hanging it. No root, no cgroups.
#include "http/server.h"

#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "fake_supervisor.h"

namespace mp::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using asio::ip::tcp;
using json = nlohmann::json;
using std::chrono::milliseconds;
using testing::FakeSupervisor;

constexpr std::string_view kToken = "mp-test-token-0123456789abcdefghijklmnopq";  // 40 chars
constexpr std::string_view kWrongToken = "mp-test-token-0123456789abcdefghijklmnopX";
constexpr auto kIoDeadline = std::chrono::seconds(20);  // any one client connection
constexpr auto kWait = milliseconds(5000);              // anything we poll for

// Shuts `fd` down when `after` passes before the object is destroyed: a blocking read on it
// then fails at once.
class Deadline {
 public:
  Deadline(int fd, std::chrono::milliseconds after)
      : thread_([this, fd, after] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_for(lock, after, [this] { return done_; })) {
            ::shutdown(fd, SHUT_RDWR);
          }
        }) {}
  ~Deadline() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

using Response = bhttp::response<bhttp::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;

std::string Header(const Response& r, std::string_view name) {
  auto it = r.find(beast::string_view(name.data(), name.size()));
  return it == r.end() ? std::string() : std::string(it->value());
}

json Json(const Response& r) { return json::parse(r.body(), nullptr, false); }

// The public error shape (docs/api.md, "Errors"): `status` with {"error": <text>, "code": code}
// and "field" exactly when `field` is not empty. For responses and refused WebSocket upgrades.
template <class Message>
::testing::AssertionResult IsApiError(const Message& r, int status, std::string_view code,
                                      std::string_view field = {}) {
  const json j = json::parse(r.body(), nullptr, false);
  const bool shape = j.is_object() && j.contains("error") && j["error"].is_string();
  const bool has_field = j.is_object() && j.contains("field");
  if (static_cast<int>(r.result_int()) == status && shape && j.value("code", "") == code &&
      has_field == !field.empty() && (!has_field || j["field"] == field)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "got " << r.result_int() << " " << r.body() << "; want " << status << " code \"" << code
         << "\"" << (field.empty() ? " and no field" : " field \"") << field
         << (field.empty() ? "" : "\"");
}

std::string Bearer(std::string_view token) { return "Bearer " + std::string(token); }

// One TCP connection to the server, with a deadline.
class Connection {
 public:
  explicit Connection(uint16_t port, int receive_buffer = 0) {
    socket_.open(tcp::v4());
    if (receive_buffer > 0) {
      socket_.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    }
    beast::error_code ec;
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    EXPECT_FALSE(ec) << "connect: " << ec.message();
    deadline_.emplace(socket_.native_handle(), kIoDeadline);
  }
  ~Connection() {
    deadline_.reset();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
  }

  // Writes `request` (a failed write is tolerated: the server may answer and close before
  // taking a body it refuses) and reads the answer; status 0 when none came.
  Response Exchange(bhttp::request<bhttp::string_body>& request) {
    beast::error_code ec;
    bhttp::write(socket_, request, ec);
    return Read();
  }
  Response ExchangeRaw(const std::string& raw) {
    beast::error_code ec;
    asio::write(socket_, asio::buffer(raw), ec);
    return Read();
  }
  Response Read() {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    beast::error_code ec;
    bhttp::read(socket_, buffer_, parser, ec);
    if (ec) {
      Response none;
      none.result(0);
      none.body() = "read: " + ec.message();
      return none;
    }
    return parser.release();
  }
  asio::io_context& io() { return io_; }
  tcp::socket& socket() { return socket_; }
  beast::flat_buffer& buffer() { return buffer_; }

 private:
  asio::io_context io_;
  tcp::socket socket_{io_};
  beast::flat_buffer buffer_;
  std::optional<Deadline> deadline_;
};

bhttp::request<bhttp::string_body> MakeRequest(bhttp::verb method, const std::string& target,
                                               std::optional<std::string_view> token,
                                               const std::string& body = {},
                                               const Headers& headers = {}) {
  bhttp::request<bhttp::string_body> req{method, target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  if (token) req.set(bhttp::field::authorization, Bearer(*token));
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() || method == bhttp::verb::post) {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
  }
  req.keep_alive(false);
  return req;
}

// One message of a WebSocket stream, as JSON (null when it was not JSON).
struct WsMessage {
  bool ok = false;  // false: the connection ended (see WsClient::close_code)
  json j;
  std::string text;
};

class WsClient {
 public:
  // Connects and asks for the upgrade of `target`; `token` goes in the Authorization header
  // when given. ok() tells whether the server said 101; status() is what it said.
  WsClient(uint16_t port, const std::string& target, std::optional<std::string_view> token,
           int receive_buffer = 0)
      : conn_(port, receive_buffer), ws_(conn_.socket()) {
    if (token) {
      ws_.set_option(websocket::stream_base::decorator(
          [t = std::string(*token)](websocket::request_type& req) {
            req.set(bhttp::field::authorization, Bearer(t));
          }));
    }
    // Asynchronously, because Beast 1.74's synchronous handshake leaves the response empty
    // when the server declines, and the refusals are what some tests look at.
    beast::error_code ec = asio::error::operation_aborted;
    ws_.async_handshake(response_, "127.0.0.1", target, [&ec](beast::error_code e) { ec = e; });
    conn_.io().run();
    ok_ = !ec;
  }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] int status() const { return response_.result_int(); }
  const websocket::response_type& response() const { return response_; }

  WsMessage Read() {
    WsMessage m;
    beast::error_code ec;
    ws_.read(buffer_, ec);
    if (ec) {
      closed_ = true;
      close_code_ = ec == websocket::error::closed ? static_cast<int>(ws_.reason().code) : -1;
      return m;
    }
    m.ok = true;
    m.text = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    m.j = json::parse(m.text, nullptr, false);
    EXPECT_FALSE(m.j.is_discarded()) << "not JSON (or not UTF-8): " << m.text.substr(0, 200);
    return m;
  }
  // Reads until a message of `type`; skipped messages go to *skipped when given.
  WsMessage ReadType(std::string_view type, std::vector<json>* skipped = nullptr) {
    for (;;) {
      WsMessage m = Read();
      if (!m.ok || m.j.value("type", "") == type) return m;
      if (skipped != nullptr) skipped->push_back(m.j);
    }
  }
  void SendText(const std::string& text) {
    ws_.text(true);
    beast::error_code ec;
    ws_.write(asio::buffer(text), ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  void SendBinary(const std::string& bytes) {
    ws_.binary(true);
    beast::error_code ec;
    ws_.write(asio::buffer(bytes), ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  [[nodiscard]] bool closed() const { return closed_; }
  [[nodiscard]] int close_code() const { return close_code_; }

 private:
  Connection conn_;
  websocket::stream<tcp::socket&> ws_;
  websocket::response_type response_;
  beast::flat_buffer buffer_;
  bool ok_ = false;
  bool closed_ = false;
  int close_code_ = 0;
};

// The output of one WebSocket stream, checked as it is read: every stdout/stderr message
// starts where the previous one ended (its `offset` is the previous `next`).
struct Received {
  std::string data;
  uint64_t start = 0;  // offset of data[0]
  uint64_t next = 0;
  std::vector<json> lagged;
  std::vector<json> gaps;
  std::vector<json> errors;
  std::optional<json> killed;
  std::optional<json> exit;
  int messages = 0;
};

// Reads the catchup message into `r`.
void ReadCatchup(WsClient& ws, Received* r) {
  WsMessage m = ws.Read();
  ASSERT_TRUE(m.ok);
  ASSERT_EQ(m.j.value("type", ""), "catchup") << m.text.substr(0, 200);
  r->data = m.j["data"].get<std::string>();
  r->start = m.j["offset"].get<uint64_t>();
  r->next = m.j["next"].get<uint64_t>();
}

// Handles one message; false once the stream is over (exit read or connection ended).
bool Take(const WsMessage& m, Received* r) {
  if (!m.ok) return false;
  ++r->messages;
  const std::string type = m.j.value("type", "");
  if (type == "stdout" || type == "stderr") {
    EXPECT_EQ(m.j["offset"].get<uint64_t>(), r->next) << "a hole or an overlap before " << type;
    r->data += m.j["data"].get<std::string>();
    r->next = m.j["next"].get<uint64_t>();
  } else if (type == "gap") {
    EXPECT_EQ(m.j["from"].get<uint64_t>(), r->next);
    r->next = m.j["to"].get<uint64_t>();
    r->gaps.push_back(m.j);
  } else if (type == "lagged") {
    r->lagged.push_back(m.j);
  } else if (type == "error") {
    r->errors.push_back(m.j);
  } else if (type == "killed") {
    r->killed = m.j;
  } else if (type == "exit") {
    r->exit = m.j;
    return false;
  } else {
    ADD_FAILURE() << "unexpected message " << m.text.substr(0, 200);
  }
  return true;
}

void ReadUntilExit(WsClient& ws, Received* r) {
  while (Take(ws.Read(), r)) {
  }
}

// Compares two possibly large byte strings without printing megabytes on failure.
::testing::AssertionResult SameBytes(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, want " << want.size() << "; first difference at " << i
         << " (hash " << std::hash<std::string>{}(got) << " vs " << std::hash<std::string>{}(want)
         << ")";
}

// The value of an unlabelled sample in Prometheus text; -1 when absent.
double MetricValue(const std::string& text, const std::string& name) {
  const std::string key = "\n" + name + " ";
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size(), text.find('\n', at + 1) - at - key.size()));
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = fake_.Start();
    ASSERT_TRUE(started) << started.error().ToString();
    StartServer(Config());
  }

  void TearDown() override {
    StopServer();
    fake_.Stop();
  }

  ApiConfig Config() const {
    ApiConfig c;
    c.listen = {{"127.0.0.1", 0}};
    c.control_socket = fake_.socket_path();
    c.auth_failures_per_minute = 1000;  // tests of the limiter lower it
    return c;
  }

  void StartServer(ApiConfig config) {
    auto tokens = TokenSet::FromTokens({std::string(kToken)});
    ASSERT_TRUE(tokens) << tokens.error().ToString();
    server_ = std::make_unique<Server>(std::move(config), std::move(*tokens));
    auto started = server_->Start();
    ASSERT_TRUE(started) << started.error().ToString();
    ASSERT_EQ(server_->endpoints().size(), 1u);
    port_ = server_->endpoints()[0].port();
    ASSERT_NE(port_, 0);
    thread_ = std::thread([s = server_.get()] { s->Run(); });
    ASSERT_TRUE(WaitReady()) << "the API never became ready";
  }

  void StopServer() {
    if (!server_) return;
    server_->Stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  void RestartServer(ApiConfig config) {
    StopServer();
    StartServer(std::move(config));
  }

  bool WaitReady() {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Get("/readyz").result_int() == 200) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

  Response Send(bhttp::verb method, const std::string& target, const std::string& body = {},
                std::optional<std::string_view> token = kToken, const Headers& headers = {}) {
    Connection conn(port_);
    auto req = MakeRequest(method, target, token, body, headers);
    return conn.Exchange(req);
  }
  Response Get(const std::string& target, std::optional<std::string_view> token = kToken) {
    return Send(bhttp::verb::get, target, {}, token);
  }
  Response Post(const std::string& target, const std::string& body) {
    return Send(bhttp::verb::post, target, body);
  }
  Response Raw(const std::string& request) {
    Connection conn(port_);
    return conn.ExchangeRaw(request);
  }

  // POST /sessions; the new session's id ("" on failure).
  std::string Spawn(const json& body) {
    auto r = Post("/sessions", body.dump());
    EXPECT_EQ(r.result_int(), 201) << r.body();
    return Json(r).value("id", "");
  }

  bool WaitEnded(const std::string& id) {
    return fake_.WaitUntil(
        [&](const FakeSupervisor& f) {
          auto info = f.Info(id);
          return info && info->end.has_value();
        },
        kWait);
  }

  std::string WsTarget(const std::string& id, const std::string& query = {}) const {
    return "/sessions/" + id + "/ws" + query;
  }

  FakeSupervisor fake_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

// Each route once; the session id is a real one so that only auth can refuse.
std::vector<std::pair<bhttp::verb, std::string>> AllRoutes(const std::string& id) {
  const std::string s = "/sessions/" + id;
  return {{bhttp::verb::get, "/"},
          {bhttp::verb::get, "/health"},
          {bhttp::verb::get, "/livez"},
          {bhttp::verb::get, "/readyz"},
          {bhttp::verb::get, "/metrics"},
          {bhttp::verb::get, "/version"},
          {bhttp::verb::get, "/policies"},
          {bhttp::verb::get, "/openapi.json"},
          {bhttp::verb::post, "/sessions"},
          {bhttp::verb::get, "/sessions"},
          {bhttp::verb::get, s},
          {bhttp::verb::delete_, s},
          {bhttp::verb::post, s + "/input"},
          {bhttp::verb::post, s + "/close-stdin"},
          {bhttp::verb::post, s + "/resize"},
          {bhttp::verb::post, s + "/signal"},
          {bhttp::verb::get, s + "/transcript"},
          {bhttp::verb::get, s + "/output"},
          {bhttp::verb::get, s + "/ws"},
          {bhttp::verb::get, "/no-such-route"}};
}

// ---- Auth.

TEST_F(HttpServerTest, EveryRouteNeedsTheToken) {
  const std::string id = Spawn({{"task", "idle"}});
  ASSERT_FALSE(id.empty());
  // What the supervisor is asked to do; the API's own audit lines (auth_failed) do not count.
  const auto acting = [&] { return fake_.requests() - fake_.requests(wire::RequestType::kAudit); };
  const uint64_t before = acting();
  for (const auto& [method, target] : AllRoutes(id)) {
    SCOPED_TRACE(std::string(bhttp::to_string(method)) + " " + target);
    for (const auto token : {std::optional<std::string_view>(), std::optional(kWrongToken)}) {
      auto r = Send(method, target, method == bhttp::verb::post ? R"({"task":"x"})" : "", token);
      EXPECT_EQ(r.result_int(), 401);
      EXPECT_EQ(Json(r), json::parse(R"({"error":"Unauthorized","code":"unauthorized"})"));
      EXPECT_EQ(Header(r, "WWW-Authenticate"), "Bearer");
    }
    // Another scheme, and the token without a scheme.
    auto basic =
        Send(method, target, {}, std::nullopt, {{"Authorization", "Basic " + std::string(kToken)}});
    EXPECT_TRUE(IsApiError(basic, 401, "unauthorized"));
    auto bare = Send(method, target, {}, std::nullopt, {{"Authorization", std::string(kToken)}});
    EXPECT_TRUE(IsApiError(bare, 401, "unauthorized"));
  }
  EXPECT_EQ(acting(), before) << "an unauthenticated request reached the supervisor";
  // Each refusal was reported to the audit log instead (at most 10 a minute from one address).
  EXPECT_TRUE(fake_.WaitUntil(
      [](const testing::FakeSupervisor& f) { return f.requests(wire::RequestType::kAudit) >= 10; },
      std::chrono::seconds(5)));
  // The scheme is case-insensitive.
  auto lower = Send(bhttp::verb::get, "/health", {}, std::nullopt,
                    {{"Authorization", "bearer " + std::string(kToken)}});
  EXPECT_EQ(lower.result_int(), 200);
}

TEST_F(HttpServerTest, QueryTokenOnlyForWebSocketUpgrades) {
  const std::string id = Spawn({{"task", "idle"}});
  const std::string q = "?token=" + std::string(kToken);
  EXPECT_TRUE(IsApiError(Get("/sessions" + q, std::nullopt), 401, "unauthorized"));
  EXPECT_TRUE(IsApiError(Get("/sessions/" + id + q, std::nullopt), 401, "unauthorized"));
  // The ws route without an upgrade is a plain GET: the query token does not count either.
  EXPECT_TRUE(IsApiError(Get(WsTarget(id, q), std::nullopt), 401, "unauthorized"));

  WsClient with_header(port_, WsTarget(id), kToken);
  EXPECT_TRUE(with_header.ok()) << with_header.status();
  EXPECT_EQ(with_header.status(), 101);
  EXPECT_EQ(with_header.Read().j.value("type", ""), "catchup");

  WsClient with_query(port_, WsTarget(id, q), std::nullopt);
  EXPECT_TRUE(with_query.ok()) << with_query.status();
  EXPECT_EQ(with_query.Read().j.value("type", ""), "catchup");

  WsClient without(port_, WsTarget(id), std::nullopt);
  EXPECT_FALSE(without.ok());
  EXPECT_TRUE(IsApiError(without.response(), 401, "unauthorized"));
  WsClient wrong(port_, WsTarget(id, "?token=" + std::string(kWrongToken)), std::nullopt);
  EXPECT_FALSE(wrong.ok());
  EXPECT_TRUE(IsApiError(wrong.response(), 401, "unauthorized"));
  WsClient wrong_header(port_, WsTarget(id), kWrongToken);
  EXPECT_TRUE(IsApiError(wrong_header.response(), 401, "unauthorized"));
}

TEST_F(HttpServerTest, UnauthenticatedLookupOfKnownAndUnknownSessionsIsIdentical) {
  const std::string id = Spawn({{"task", "idle"}});
  const uint64_t gets = fake_.requests(wire::RequestType::kGet);
  for (const std::string suffix : {"", "/transcript", "/output", "/ws"}) {
    auto known = Get("/sessions/" + id + suffix, std::nullopt);
    auto unknown = Get("/sessions/s-999999" + suffix, std::nullopt);
    auto invalid = Get("/sessions/not-an-id" + suffix, std::nullopt);
    EXPECT_EQ(known.result_int(), 401) << suffix;
    for (const auto* other : {&unknown, &invalid}) {
      EXPECT_EQ(other->result_int(), known.result_int()) << suffix;
      EXPECT_EQ(other->body(), known.body()) << suffix;
      std::vector<std::pair<std::string, std::string>> a, b;
      for (const auto& f : known) a.emplace_back(f.name_string(), f.value());
      for (const auto& f : *other) b.emplace_back(f.name_string(), f.value());
      EXPECT_EQ(a, b) << suffix;
    }
  }
  EXPECT_EQ(fake_.requests(wire::RequestType::kGet), gets);
  // Authenticated, they differ.
  EXPECT_EQ(Get("/sessions/" + id).result_int(), 200);
  EXPECT_TRUE(IsApiError(Get("/sessions/s-999999"), 404, "not_found"));
}

// Issue 15's lockout, through the real server: failures from one address block that address
// for bad credentials only; the right token from the same address is still served (it got 429
// before, which let anyone sharing a proxy's address lock every client out).
TEST_F(HttpServerTest, FailuresLimitBadCredentialsButNeverTheRightToken) {
  ApiConfig config = Config();
  config.auth_failures_per_minute = 20;
  RestartServer(config);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Get("/sessions", kWrongToken).result_int(), 401) << i;
  }
  // The 21st bad request, with a wrong token or none: 429 (not 401: no oracle).
  for (const auto token : {std::optional(kWrongToken), std::optional<std::string_view>()}) {
    auto r = Get("/sessions", token);
    EXPECT_TRUE(IsApiError(r, 429, "rate_limited"));
    const std::string retry = Header(r, "Retry-After");
    ASSERT_FALSE(retry.empty());
    const int seconds = std::stoi(retry);
    EXPECT_GE(seconds, 1);
    EXPECT_LE(seconds, 60);
  }
  // The right token from the same address is served on every route kind.
  for (const std::string target : {"/sessions", "/health", "/livez", "/metrics"}) {
    EXPECT_EQ(Get(target).result_int(), 200) << target;
  }
  const std::string id = Spawn({{"task", "idle"}});
  ASSERT_FALSE(id.empty());
  // The WebSocket upgrade too, token in the header or the query; a wrong one is limited.
  WsClient ws(port_, WsTarget(id, "?token=" + std::string(kToken)), std::nullopt);
  EXPECT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ(ws.Read().j.value("type", ""), "catchup");
  WsClient wrong(port_, WsTarget(id, "?token=" + std::string(kWrongToken)), std::nullopt);
  EXPECT_FALSE(wrong.ok());
  EXPECT_TRUE(IsApiError(wrong.response(), 429, "rate_limited"));
  // Still blocked for bad credentials after the good ones.
  EXPECT_EQ(Get("/sessions", kWrongToken).result_int(), 429);
  const std::string metrics = server_->context().metrics.Render({});
  EXPECT_EQ(MetricValue(metrics, "monkeyproof_api_auth_failures_total"), 20);
  EXPECT_EQ(MetricValue(metrics, "monkeyproof_api_rate_limited_total"), 4);
}

// ---- Routing.

TEST_F(HttpServerTest, NotFoundMethodNotAllowedAndBadTargets) {
  auto nf = Get("/nope");
  EXPECT_EQ(nf.result_int(), 404);
  EXPECT_EQ(Json(nf).value("code", ""), "not_found");
  EXPECT_TRUE(IsApiError(Get("/sessions/"), 404, "not_found"));
  EXPECT_TRUE(IsApiError(Get("/sessions/s-1/nope"), 404, "not_found"));

  auto put = Send(bhttp::verb::put, "/sessions");
  EXPECT_EQ(put.result_int(), 405);
  EXPECT_EQ(Json(put).value("code", ""), "method_not_allowed");
  const std::string allow = Header(put, "Allow");
  EXPECT_NE(allow.find("GET"), std::string::npos) << allow;
  EXPECT_NE(allow.find("POST"), std::string::npos) << allow;
  auto del = Send(bhttp::verb::delete_, "/health");
  EXPECT_EQ(del.result_int(), 405);
  EXPECT_EQ(Header(del, "Allow"), "GET");
  auto post_session = Send(bhttp::verb::post, "/sessions/s-1", "{}");
  EXPECT_EQ(post_session.result_int(), 405);
  const std::string allow2 = Header(post_session, "Allow");
  EXPECT_NE(allow2.find("DELETE"), std::string::npos) << allow2;

  const std::string auth = "Authorization: " + Bearer(kToken) + "\r\n";
  for (const std::string target :
       {"sessions", "/sessions?owner=%zz", "/sessions/s-1/output?since=%", "http://x/sessions"}) {
    auto r = Raw("GET " + target + " HTTP/1.1\r\nHost: x\r\n" + auth + "Connection: close\r\n\r\n");
    EXPECT_EQ(r.result_int(), 400) << target << " " << r.body();
    EXPECT_EQ(Json(r).value("code", ""), "bad_request") << target;
  }
  // Bad query values name the parameter.
  EXPECT_TRUE(IsApiError(Get("/sessions/s-1/output?since=-1"), 400, "bad_request", "?since"));
}

// ---- POST /sessions.

TEST_F(HttpServerTest, CreateSessionBodyErrorsNameTheField) {
  struct Case {
    std::string body;
    int status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"not json", 400, ""},
      {"[1,2]", 400, ""},
      {R"({"task":"x","task":"y"})", 400, ""},
      {"{}", 400, "/task"},
      {R"({"task":""})", 400, "/task"},
      {R"({"task":5})", 400, "/task"},
      {R"({"task":"x","preset":"claude"})", 400, "/preset"},
      {R"({"task":"x","type":"exec","preset":"claude"})", 400, "/preset"},
      {R"({"task":"x","type":"print","mode":"exec"})", 400, "/mode"},
      {R"({"task":"x","type":"shell"})", 400, "/type"},
      {R"({"task":"x","labels":["a",1]})", 400, "/labels/1"},
      {R"({"task":"x","labels":"a"})", 400, "/labels"},
      {R"({"task":"x","maxTurns":"5"})", 400, "/maxTurns"},
      {R"({"task":"x","maxTurns":0})", 400, "/maxTurns"},
      {R"({"task":"x","cwd":""})", 400, "/cwd"},
      {R"({"task":"x","env":{"A":1}})", 400, "/env/A"},
      {R"({"task":"x","args":[1]})", 400, "/args/0"},
      {R"({"task":"x","owner":7})", 400, "/owner"},
      {R"({"task":"x","pty":{"rows":0,"cols":80}})", 400, "/pty/rows"},
      {R"({"task":"x","limits":{"memoryMaxBytes":-1}})", 400, "/limits/memoryMaxBytes"},
      {json{{"task", std::string(wire::kMaxTaskBytes + 1, 'x')}}.dump(), 413, "/task"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body.substr(0, 80));
    auto r = Post("/sessions", c.body);
    EXPECT_EQ(r.result_int(), c.status) << r.body();
    const json j = Json(r);
    EXPECT_TRUE(j.contains("error")) << r.body();
    EXPECT_EQ(j.value("code", ""), c.status == 413 ? "too_large" : "bad_request");
    if (!c.field.empty()) {
      EXPECT_EQ(j.value("field", ""), c.field) << r.body();
    }
  }
  // Over body_limit_bytes (1.5 MiB): refused from the Content-Length, before the body is
  // parsed (http_size_test.cc checks that the rest is drained).
  auto big = Post("/sessions", json{{"task", std::string(2 * 1024 * 1024, 'x')}}.dump());
  EXPECT_EQ(big.result_int(), 413) << big.body();
  EXPECT_EQ(Json(big).value("code", ""), "too_large");
  EXPECT_EQ(fake_.requests(wire::RequestType::kSpawn), 0u);
  // Unknown members are ignored, as in the original.
  auto ok = Post("/sessions", R"({"task":"x","somethingElse":{"a":[1]}})");
  EXPECT_EQ(ok.result_int(), 201) << ok.body();
}

TEST_F(HttpServerTest, CreateSessionAnswersSessionInfo) {
  auto r = Post("/sessions",
                R"({"task":"echo","owner":"me","labels":[" B ","a","b",""],"cwd":"/srv/x"})");
  ASSERT_EQ(r.result_int(), 201) << r.body();
  EXPECT_EQ(Header(r, "Content-Type"), "application/json");
  const auto j = nlohmann::ordered_json::parse(r.body());
  // The original's members first, in its order; then ours.
  const std::vector<std::string> original = {
      "id",  "task",      "taskPreview", "cwd",         "command",   "type",  "status", "exitCode",
      "pid", "createdAt", "endedAt",     "outputLines", "wsClients", "owner", "labels"};
  std::vector<std::string> keys;
  for (const auto& [key, value] : j.items()) keys.push_back(key);
  ASSERT_GE(keys.size(), original.size());
  EXPECT_EQ(std::vector<std::string>(keys.begin(), keys.begin() + original.size()), original);
  for (const char* ours :
       {"state", "preset", "outputBytes", "endReason", "signal", "pty", "resources"}) {
    EXPECT_TRUE(j.contains(ours)) << ours;
  }
  EXPECT_TRUE(wire::IsValidSessionId(j["id"].get<std::string>()));
  EXPECT_EQ(j["task"], "echo");
  EXPECT_EQ(j["taskPreview"], "echo");
  EXPECT_EQ(j["cwd"], "/srv/x");
  EXPECT_EQ(j["type"], "exec");
  EXPECT_EQ(j["status"], "running");
  EXPECT_EQ(j["state"], "running");
  EXPECT_TRUE(j["exitCode"].is_null());
  EXPECT_TRUE(j["endedAt"].is_null());
  EXPECT_TRUE(j["pid"].is_number_unsigned());
  EXPECT_EQ(j["createdAt"].get<std::string>().size(), 24u);  // 2026-11-21T19:31:44.759Z
  EXPECT_EQ(j["owner"], "me");
  EXPECT_EQ(j["labels"], nlohmann::ordered_json::parse(R"(["b","a"])"));
  EXPECT_EQ(j["outputBytes"], 0);
  EXPECT_EQ(j["wsClients"], 0);
  // The spawn the supervisor saw.
  auto info = fake_.Info(j["id"].get<std::string>());
  ASSERT_TRUE(info);
  EXPECT_EQ(info->owner, "me");

  // type/mode, preset.
  auto print = Post("/sessions", R"({"task":"hi","mode":"print","preset":"claude","maxTurns":3})");
  ASSERT_EQ(print.result_int(), 201) << print.body();
  EXPECT_EQ(Json(print)["type"], "print");
  EXPECT_EQ(Json(print)["preset"], "claude");
  auto interactive = Post("/sessions", R"({"task":"x","type":"interactive","preset":"codex",)"
                                       R"("pty":{"rows":30,"cols":100}})");
  ASSERT_EQ(interactive.result_int(), 201) << interactive.body();
  EXPECT_EQ(Json(interactive)["pty"], json::parse(R"({"rows":30,"cols":100})"));
}

TEST_F(HttpServerTest, SupervisorErrorsMapToStatuses) {
  struct Case {
    std::string code;
    int status;
  };
  for (const auto& c : std::vector<Case>{{"bad_request", 400},
                                         {"not_found", 404},
                                         {"wrong_state", 409},
                                         {"capacity", 429},
                                         {"policy_violation", 403},
                                         {"internal", 500},
                                         {"unavailable", 503}}) {
    auto r = Post("/sessions", json{{"task", "fail:" + c.code}}.dump());
    EXPECT_EQ(r.result_int(), c.status) << c.code << " " << r.body();
    EXPECT_EQ(Json(r).value("code", ""), c.code);
    EXPECT_EQ(Json(r).value("field", ""), "/task");  // passed on from the supervisor
    if (c.status == 429 || c.status == 503) {
      EXPECT_FALSE(Header(r, "Retry-After").empty()) << c.code;
    }
  }
  // The supervisor names the wire's members; the client reads the public ones.
  for (const auto& [wire_field, public_field] : std::vector<std::pair<std::string, std::string>>{
           {"/session_type", "/type"}, {"/max_turns", "/maxTurns"}, {"/cwd", "/cwd"}, {"", ""}}) {
    auto r = Post("/sessions", json{{"task", "fail:policy_violation:" + wire_field}}.dump());
    EXPECT_EQ(r.result_int(), 403) << r.body();
    EXPECT_EQ(Json(r).value("field", ""), public_field) << r.body();
    EXPECT_EQ(Json(r).contains("field"), !public_field.empty()) << r.body();
  }
  // Unknown preset.
  auto preset = Post("/sessions", R"({"task":"x","type":"print","preset":"nope"})");
  EXPECT_TRUE(IsApiError(preset, 404, "not_found", "/preset"));
  // At capacity.
  fake_.SetMaxSessions(1);
  EXPECT_EQ(Post("/sessions", R"({"task":"idle"})").result_int(), 201);
  auto full = Post("/sessions", R"({"task":"idle"})");
  EXPECT_EQ(full.result_int(), 429);
  EXPECT_EQ(Json(full).value("code", ""), "capacity");
  EXPECT_FALSE(Header(full, "Retry-After").empty());
}

TEST_F(HttpServerTest, ExpectContinueUpload) {
  Connection conn(port_);
  auto req = MakeRequest(bhttp::verb::post, "/sessions", kToken,
                         json{{"task", "idle"}, {"owner", std::string(4000, 'o')}}.dump());
  req.keep_alive(false);
  req.set(bhttp::field::expect, "100-continue");
  bhttp::request_serializer<bhttp::string_body> sr{req};
  beast::error_code ec;
  bhttp::write_header(conn.socket(), sr, ec);
  ASSERT_FALSE(ec) << ec.message();
  // The interim answer comes before we send a byte of the body.
  bhttp::response<bhttp::empty_body> interim;
  bhttp::read(conn.socket(), conn.buffer(), interim, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(interim.result_int(), 100);
  bhttp::write(conn.socket(), sr, ec);
  ASSERT_FALSE(ec) << ec.message();
  auto r = conn.Read();
  // Owner over 256 bytes: the body was read.
  EXPECT_TRUE(IsApiError(r, 400, "bad_request", "/owner"));

  // And one that succeeds.
  Connection conn2(port_);
  auto ok = MakeRequest(bhttp::verb::post, "/sessions", kToken,
                        json{{"task", "idle"}, {"owner", "upload"}}.dump());
  ok.set(bhttp::field::expect, "100-continue");
  bhttp::request_serializer<bhttp::string_body> sr2{ok};
  bhttp::write_header(conn2.socket(), sr2, ec);
  bhttp::response<bhttp::empty_body> interim2;
  bhttp::read(conn2.socket(), conn2.buffer(), interim2, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(interim2.result_int(), 100);
  bhttp::write(conn2.socket(), sr2, ec);
  auto created = conn2.Read();
  EXPECT_EQ(created.result_int(), 201) << created.body();
  EXPECT_EQ(Json(created).value("owner", ""), "upload");
}

// ---- GET /sessions, /sessions/:id, DELETE, input.

TEST_F(HttpServerTest, ListSessionsFiltersAndPages) {
  fake_.SetListPageSize(2);  // the API has to follow `more`
  std::vector<std::string> ids;
  ids.push_back(Spawn({{"task", "idle"}, {"owner", "alice"}, {"labels", {"x"}}}));
  ids.push_back(Spawn({{"task", "idle"}, {"owner", "bob"}, {"labels", {"x", "y"}}}));
  ids.push_back(Spawn({{"task", "idle"}, {"owner", "alice"}}));
  ids.push_back(Spawn({{"task", "idle"}, {"owner", "carol"}, {"labels", {"Y"}}}));
  ids.push_back(Spawn({{"task", "idle"}, {"owner", "alice"}}));
  EXPECT_EQ(Send(bhttp::verb::delete_, "/sessions/" + ids[1]).result_int(), 200);
  fake_.End(ids[2], 3);

  auto list = [&](const std::string& query) {
    auto r = Get("/sessions" + query);
    EXPECT_EQ(r.result_int(), 200) << query << " " << r.body();
    std::vector<std::string> got;
    for (const auto& s : Json(r)) got.push_back(s["id"].get<std::string>());
    return got;
  };
  EXPECT_EQ(list(""), ids);
  EXPECT_EQ(list("?owner=alice"), (std::vector{ids[0], ids[2], ids[4]}));
  EXPECT_EQ(list("?label=x"), (std::vector{ids[0], ids[1]}));
  EXPECT_EQ(list("?label=%20Y%20"), (std::vector{ids[1], ids[3]}));  // normalised like labels
  // An exec session ended by DELETE reads "exited" (128 + signal) as in the original; its
  // exact state is killed.
  EXPECT_TRUE(list("?status=killed").empty());
  EXPECT_EQ(list("?status=exited"), (std::vector{ids[1], ids[2]}));
  EXPECT_EQ(list("?state=killed"), (std::vector{ids[1]}));
  EXPECT_EQ(list("?state=exited"), (std::vector{ids[2]}));
  EXPECT_EQ(list("?status=running"), (std::vector{ids[0], ids[3], ids[4]}));
  EXPECT_EQ(list("?status=running&owner=alice"), (std::vector{ids[0], ids[4]}));
  EXPECT_EQ(list("?limit=3"), (std::vector{ids[0], ids[1], ids[2]}));
  EXPECT_EQ(list("?status=running&limit=2"), (std::vector{ids[0], ids[3]}));
  EXPECT_TRUE(list("?owner=nobody").empty());

  auto killed = Json(Get("/sessions?state=killed"))[0];
  EXPECT_EQ(killed["status"], "exited");
  EXPECT_EQ(killed["exitCode"], 137);
  EXPECT_EQ(killed["endReason"], "killed_by_request");
  EXPECT_EQ(killed["signal"], 9);
  auto exited = Json(Get("/sessions?status=exited"))[1];
  EXPECT_EQ(exited["exitCode"], 3);
  EXPECT_FALSE(exited["endedAt"].is_null());
  EXPECT_TRUE(exited["resources"].is_object());

  for (const auto& [bad, field] :
       std::vector<std::pair<std::string, std::string>>{{"?status=bogus", "?status"},
                                                        {"?state=bogus", "?state"},
                                                        {"?state=killed&status=exited", "?state"},
                                                        {"?limit=0", "?limit"},
                                                        {"?limit=1001", "?limit"},
                                                        {"?limit=x", "?limit"}}) {
    EXPECT_TRUE(IsApiError(Get("/sessions" + bad), 400, "bad_request", field)) << bad;
  }
}

TEST_F(HttpServerTest, SessionDetailWithRecentOutput) {
  const std::string id = Spawn({{"task", "idle"}});
  fake_.Append(id, wire::OutputStream::kStdout, "hello\n");
  fake_.Append(id, wire::OutputStream::kStderr, "oops\nagain\n");
  fake_.Append(id, wire::OutputStream::kStdout, "bye");
  auto r = Get("/sessions/" + id);
  ASSERT_EQ(r.result_int(), 200) << r.body();
  auto j = Json(r);
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["recentOutput"], "hello\n[stderr] oops\n[stderr] again\nbye");
  EXPECT_EQ(j["transcriptPath"], "/sessions/" + id + "/transcript");
  EXPECT_EQ(j["outputBytes"], 6 + 11 + 3);
  EXPECT_EQ(j["outputLines"], 3);
  EXPECT_TRUE(j["owner"].is_null());  // none given: null, as in the original

  // The transcript: the original's header, then the output with stderr marked.
  const std::string header = "# Session " + id + "\n## Task\n\nidle\n\n---\n";
  const std::string text = header + "hello\n[stderr] oops\n[stderr] again\nbye";
  auto t = Get("/sessions/" + id + "/transcript");
  EXPECT_EQ(t.body(), text);
  EXPECT_EQ(Header(t, "x-transcript-total-size"), std::to_string(text.size()));
  auto tail = Get("/sessions/" + id + "/transcript?since=" + std::to_string(header.size() + 6));
  EXPECT_EQ(tail.body(), "[stderr] oops\n[stderr] again\nbye");
  // The WebSocket catchup's data is marked too; its offsets still count output bytes.
  {
    WsClient ws(port_, WsTarget(id), kToken);
    ASSERT_TRUE(ws.ok()) << ws.status();
    Received c;
    ReadCatchup(ws, &c);
    EXPECT_EQ(c.data, "hello\n[stderr] oops\n[stderr] again\nbye");
    EXPECT_EQ(c.start, 0u);
    EXPECT_EQ(c.next, 20u);
  }
  // The raw bytes stay on /output.
  EXPECT_EQ(Get("/sessions/" + id + "/output").body(), "hello\noops\nagain\nbye");

  // More than 8 KiB: the tail, from a line start.
  const std::string more = FakeSupervisor::Pattern(20, 20000);
  fake_.Append(id, wire::OutputStream::kStdout, more);
  auto big = Json(Get("/sessions/" + id));
  const std::string recent = big["recentOutput"].get<std::string>();
  const std::string all = fake_.Output(id);
  EXPECT_LE(recent.size(), 8192u);
  EXPECT_GT(recent.size(), 8000u);
  EXPECT_EQ(all.substr(all.size() - recent.size()), recent);
  EXPECT_EQ(all[all.size() - recent.size() - 1], '\n');

  auto missing = Get("/sessions/s-424242");
  EXPECT_TRUE(IsApiError(missing, 404, "not_found"));
  EXPECT_EQ(Json(missing).value("error", ""), "Not found");
  EXPECT_TRUE(IsApiError(Get("/sessions/bad!id"), 404, "not_found"));
}

TEST_F(HttpServerTest, DeleteKillsAndIsIdempotent) {
  const std::string id = Spawn({{"task", "idle"}});
  auto r = Send(bhttp::verb::delete_, "/sessions/" + id);
  EXPECT_EQ(r.result_int(), 200);
  EXPECT_EQ(Json(r), json::parse(R"({"killed":true})"));
  auto info = fake_.Info(id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->state, wire::SessionState::kKilled);
  ASSERT_TRUE(info->end);
  EXPECT_EQ(info->end->reason, wire::EndReason::kKilledByRequest);
  // Again: still {"killed":true}.
  EXPECT_EQ(Json(Send(bhttp::verb::delete_, "/sessions/" + id)), json::parse(R"({"killed":true})"));
  // As the original read once the process was gone: exited, 128 + signal; ours in state,
  // endReason and signal.
  auto get = Json(Get("/sessions/" + id));
  EXPECT_EQ(get["status"], "exited");
  EXPECT_EQ(get["exitCode"], 137);
  EXPECT_EQ(get["state"], "killed");
  EXPECT_EQ(get["endReason"], "killed_by_request");
  EXPECT_EQ(get["signal"], 9);

  auto missing = Send(bhttp::verb::delete_, "/sessions/s-77777");
  EXPECT_TRUE(IsApiError(missing, 404, "not_found"));
  EXPECT_EQ(Json(missing).value("error", ""), "Not found");
}

// DELETE answers once the session has ended, so that a GET right after it sees the end; a
// session that outlives the kill is answered after a bounded wait.
TEST_F(HttpServerTest, DeleteWaitsBrieflyForTheEnd) {
  const std::string id = Spawn({{"task", "ignoreterm"}});
  auto start = std::chrono::steady_clock::now();
  auto pending =
      std::async(std::launch::async, [&] { return Send(bhttp::verb::delete_, "/sessions/" + id); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(pending.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  fake_.End(id, 0, 15);
  auto r = pending.get();
  EXPECT_EQ(Json(r), json::parse(R"({"killed":true})"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(900));
  auto get = Json(Get("/sessions/" + id));
  EXPECT_EQ(get["status"], "exited");
  EXPECT_EQ(get["exitCode"], 143);

  const std::string stubborn = Spawn({{"task", "ignoreterm"}});
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(Json(Send(bhttp::verb::delete_, "/sessions/" + stubborn)),
            json::parse(R"({"killed":true})"));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(900));
  EXPECT_LT(waited, std::chrono::seconds(5));
  EXPECT_EQ(Json(Get("/sessions/" + stubborn))["status"], "running");
}

TEST_F(HttpServerTest, InputCloseStdinResizeSignal) {
  const std::string id = Spawn({{"task", "echo"}});
  auto r = Post("/sessions/" + id + "/input", R"({"input":"hi\n"})");
  EXPECT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(Json(r), json::parse(R"({"sent":true})"));
  EXPECT_EQ(fake_.StdinOf(id), "hi\n");
  // More than one frame's worth goes in order.
  const std::string big = FakeSupervisor::Pattern(0, 150 * 1024);
  EXPECT_EQ(Post("/sessions/" + id + "/input", json{{"input", big}}.dump()).result_int(), 200);
  EXPECT_TRUE(SameBytes(fake_.StdinOf(id), "hi\n" + big));
  auto missing = Post("/sessions/" + id + "/input", R"({"data":"x"})");
  EXPECT_TRUE(IsApiError(missing, 400, "bad_request", "/input"));

  // Resize: only interactive sessions.
  auto resize = Post("/sessions/" + id + "/resize", R"({"rows":40,"cols":120})");
  EXPECT_TRUE(IsApiError(resize, 409, "wrong_state"));
  EXPECT_TRUE(IsApiError(Post("/sessions/" + id + "/resize", R"({"rows":0,"cols":120})"), 400,
                         "bad_request", "/rows"));
  const std::string tty = Spawn({{"task", "x"}, {"type", "interactive"}, {"preset", "codex"}});
  auto resized = Post("/sessions/" + tty + "/resize", R"({"rows":40,"cols":120})");
  EXPECT_EQ(Json(resized), json::parse(R"({"resized":true})"));
  EXPECT_EQ(fake_.Info(tty)->pty, (wire::PtySize{40, 120}));

  // Signals by name, with SIG, or by number.
  for (const std::string body :
       {R"({"signal":"TERM"})", R"({"signal":"sigint"})", R"({"signal":10})"}) {
    auto s = Post("/sessions/" + id + "/signal", body);
    EXPECT_EQ(Json(s), json::parse(R"({"signaled":true})")) << body;
  }
  EXPECT_EQ(fake_.SignalsOf(id), (std::vector<int32_t>{15, 2, 10}));
  EXPECT_TRUE(IsApiError(Post("/sessions/" + id + "/signal", R"({"signal":"NOPE"})"), 400,
                         "bad_request", "/signal"));

  auto closed = Post("/sessions/" + id + "/close-stdin", "");
  EXPECT_EQ(Json(closed), json::parse(R"({"closed":true})")) << closed.body();
  ASSERT_TRUE(WaitEnded(id));
  // Input to an ended session: 400, as the original answered.
  auto ended = Post("/sessions/" + id + "/input", R"({"input":"late"})");
  EXPECT_TRUE(IsApiError(ended, 400, "wrong_state"));
  // Others on an ended session: 409.
  EXPECT_TRUE(
      IsApiError(Post("/sessions/" + id + "/signal", R"({"signal":"TERM"})"), 409, "wrong_state"));
  // Input to an unknown session: 400 as the original answered, code not_found.
  for (const std::string unknown : {"s-31337", "nosuch"}) {
    auto nf = Post("/sessions/" + unknown + "/input", R"({"input":"x"})");
    EXPECT_TRUE(IsApiError(nf, 400, "not_found")) << unknown;
    EXPECT_EQ(Json(nf).value("error", ""), "Session not found or not running");
  }
  // The others: 404 "Not found".
  for (const std::string route : {"/close-stdin", "/signal", "/resize"}) {
    auto nf =
        Post("/sessions/s-31337" + route, R"({"input":"x","signal":"TERM","rows":1,"cols":1})");
    EXPECT_TRUE(IsApiError(nf, 404, "not_found")) << route;
    EXPECT_EQ(Json(nf).value("error", ""), "Not found") << route;
  }
}

// ---- Transcript and raw output.

TEST_F(HttpServerTest, TranscriptAndOutputAreByteExact) {
  const std::string id = Spawn({{"task", "emit:200000:chunk=7000"}});
  ASSERT_TRUE(WaitEnded(id));
  const std::string all = FakeSupervisor::Pattern(0, 200000);
  ASSERT_TRUE(SameBytes(fake_.Output(id), all));

  // The transcript is the original's text: a header, then the output (stdout only here).
  const std::string header = "# Session " + id + "\n## Task\n\nemit:200000:chunk=7000\n\n---\n";
  const uint64_t h = header.size();
  const std::string end = std::to_string(h + 200000);
  auto t = Get("/sessions/" + id + "/transcript");
  ASSERT_EQ(t.result_int(), 200);
  EXPECT_EQ(Header(t, "Content-Type").substr(0, 10), "text/plain");
  EXPECT_TRUE(SameBytes(t.body(), header + all));
  EXPECT_EQ(Header(t, "x-transcript-offset"), "0");
  EXPECT_EQ(Header(t, "x-transcript-total-size"), end);
  EXPECT_EQ(Header(t, "x-transcript-next-offset"), end);

  auto t2 = Get("/sessions/" + id + "/transcript?since=" + std::to_string(h + 123457));
  EXPECT_TRUE(SameBytes(t2.body(), all.substr(123457)));
  EXPECT_EQ(Header(t2, "x-transcript-offset"), std::to_string(h + 123457));
  auto t3 = Get("/sessions/" + id + "/transcript?since=" + end);
  EXPECT_EQ(t3.result_int(), 200);
  EXPECT_EQ(t3.body(), "");
  EXPECT_EQ(Header(t3, "x-transcript-next-offset"), end);
  // Past the end: clamped to the end, as the original did (this was a 400).
  for (const std::string& past : {std::to_string(h + 200001), std::string("99999999999")}) {
    auto t4 = Get("/sessions/" + id + "/transcript?since=" + past);
    EXPECT_EQ(t4.result_int(), 200) << past;
    EXPECT_EQ(t4.body(), "");
    EXPECT_EQ(Header(t4, "x-transcript-offset"), end);
    EXPECT_EQ(Header(t4, "x-transcript-total-size"), end);
    EXPECT_EQ(Header(t4, "x-transcript-next-offset"), end);
  }

  auto o = Get("/sessions/" + id + "/output?since=1000&limit=5000");
  ASSERT_EQ(o.result_int(), 200);
  EXPECT_EQ(Header(o, "Content-Type"), "application/octet-stream");
  EXPECT_TRUE(SameBytes(o.body(), all.substr(1000, 5000)));
  EXPECT_EQ(Header(o, "x-output-offset"), "1000");
  EXPECT_EQ(Header(o, "x-output-next-offset"), "6000");
  EXPECT_EQ(Header(o, "x-output-total-size"), "200000");
  EXPECT_EQ(Header(o, "x-output-ended"), "false");  // more to read
  auto rest = Get("/sessions/" + id + "/output?since=6000");
  EXPECT_TRUE(SameBytes(rest.body(), all.substr(6000)));
  EXPECT_EQ(Header(rest, "x-output-next-offset"), "200000");
  EXPECT_EQ(Header(rest, "x-output-ended"), "true");

  for (const auto& [bad, field] :
       std::vector<std::pair<std::string, std::string>>{{"?since=x", "?since"},
                                                        {"?limit=0", "?limit"},
                                                        {"?limit=1048577", "?limit"},
                                                        {"?since=1&limit=-3", "?limit"}}) {
    EXPECT_TRUE(IsApiError(Get("/sessions/" + id + "/output" + bad), 400, "bad_request", field))
        << bad;
  }
  EXPECT_TRUE(
      IsApiError(Get("/sessions/" + id + "/output?since=200001"), 400, "bad_request", "?since"));
  EXPECT_TRUE(
      IsApiError(Get("/sessions/" + id + "/transcript?since=x"), 400, "bad_request", "?since"));
  EXPECT_TRUE(IsApiError(Get("/sessions/s-5555/output"), 404, "not_found"));
  EXPECT_TRUE(IsApiError(Get("/sessions/s-5555/transcript"), 404, "not_found"));

  // Binary output, and a running session: not ended yet.
  const std::string bin = Spawn({{"task", "idle"}});
  const std::string bytes("\x00\xff\xfe\x80 binary\n\xc3", 13);
  fake_.Append(bin, wire::OutputStream::kStdout, bytes);
  fake_.Append(bin, wire::OutputStream::kStderr, "err");
  auto raw = Get("/sessions/" + bin + "/output");
  EXPECT_TRUE(SameBytes(raw.body(), bytes + "err"));
  EXPECT_EQ(Header(raw, "x-output-ended"), "false");

  // Output the supervisor no longer holds is reported, and skipped.
  fake_.DropBefore(id, 50000);
  auto gap = Get("/sessions/" + id + "/output?since=0&limit=1000");
  EXPECT_EQ(Header(gap, "x-output-gaps"), "0-50000");
  EXPECT_EQ(Header(gap, "x-output-offset"), "50000");
  EXPECT_TRUE(SameBytes(gap.body(), all.substr(50000, 1000)));
  // The transcript stays contiguous: the header, then (asked from after it) the rest past
  // the dropped range, which counts as its raw size.
  auto thead = Get("/sessions/" + id + "/transcript");
  EXPECT_EQ(thead.body(), header);
  EXPECT_EQ(Header(thead, "x-transcript-next-offset"), std::to_string(h));
  EXPECT_EQ(Header(thead, "x-transcript-total-size"), end);
  auto tgap = Get("/sessions/" + id + "/transcript?since=" + std::to_string(h));
  EXPECT_EQ(Header(tgap, "x-transcript-offset"), std::to_string(h + 50000));
  EXPECT_TRUE(SameBytes(tgap.body(), all.substr(50000)));
}

TEST_F(HttpServerTest, TranscriptCap) {
  ApiConfig config = Config();
  config.transcript_max_bytes = 100000;
  RestartServer(config);
  const std::string id = Spawn({{"task", "emit:250000"}});
  ASSERT_TRUE(WaitEnded(id));
  const std::string all =
      "# Session " + id + "\n## Task\n\nemit:250000\n\n---\n" + FakeSupervisor::Pattern(0, 250000);
  auto t = Get("/sessions/" + id + "/transcript");
  EXPECT_TRUE(SameBytes(t.body(), all.substr(0, 100000)));
  EXPECT_EQ(Header(t, "x-transcript-next-offset"), "100000");
  EXPECT_EQ(Header(t, "x-transcript-total-size"), std::to_string(all.size()));
  auto t2 = Get("/sessions/" + id + "/transcript?since=100000");
  EXPECT_TRUE(SameBytes(t2.body(), all.substr(100000, 100000)));
  auto t3 = Get("/sessions/" + id + "/transcript?since=200000");
  EXPECT_TRUE(SameBytes(t3.body(), all.substr(200000)));
  EXPECT_EQ(Header(t3, "x-transcript-next-offset"), std::to_string(all.size()));
}

// ---- WebSocket.

TEST_F(HttpServerTest, WebSocketCatchupLiveOutputExitAndClose) {
  const std::string id = Spawn({{"task", "emit:300000:chunk=3000:every=1"}});
  ASSERT_TRUE(
      fake_.WaitUntil([&](const FakeSupervisor& f) { return f.OutputBytes(id) > 0; }, kWait));
  WsClient ws(port_, WsTarget(id), kToken);
  ASSERT_TRUE(ws.ok()) << ws.status();
  WsMessage first = ws.Read();
  ASSERT_TRUE(first.ok);
  const json& c = first.j;
  EXPECT_EQ(c["type"], "catchup");
  EXPECT_EQ(c["id"], id);
  EXPECT_EQ(c["task"], "emit:300000:chunk=3000:every=1");
  EXPECT_EQ(c["status"], "running");
  EXPECT_TRUE(c["exitCode"].is_null());
  Received r;
  r.data = c["data"].get<std::string>();
  r.start = c["offset"].get<uint64_t>();
  r.next = c["next"].get<uint64_t>();
  EXPECT_EQ(r.next - r.start, r.data.size());
  EXPECT_LE(r.data.size(), 16384u);
  ReadUntilExit(ws, &r);
  ASSERT_TRUE(r.exit) << "no exit message";
  EXPECT_EQ((*r.exit)["code"], 0);
  EXPECT_EQ((*r.exit)["reason"], "exit");
  EXPECT_TRUE((*r.exit)["signal"].is_null());
  EXPECT_EQ((*r.exit)["offset"], 300000);
  EXPECT_TRUE((*r.exit)["duration"].is_number_integer());
  EXPECT_TRUE((*r.exit)["durationMs"].is_number_integer());
  EXPECT_FALSE(r.killed);
  EXPECT_TRUE(SameBytes(r.data, FakeSupervisor::Pattern(r.start, 300000 - r.start)));
  EXPECT_GT(r.messages, 2);
  // Then a normal close.
  WsMessage after = ws.Read();
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(ws.close_code(), 1000);

  // Connecting to an ended session: the recent output, then exit at once.
  WsClient late(port_, WsTarget(id), kToken);
  ASSERT_TRUE(late.ok());
  Received l;
  ReadCatchup(late, &l);
  EXPECT_EQ(l.next, 300000u);
  EXPECT_EQ(l.data.size(), 16384u);
  ReadUntilExit(late, &l);
  ASSERT_TRUE(l.exit);
  EXPECT_EQ((*l.exit)["offset"], 300000);
  late.Read();
  EXPECT_EQ(late.close_code(), 1000);

  // Unknown session: 404 before any upgrade.
  WsClient unknown(port_, WsTarget("s-999"), kToken);
  EXPECT_FALSE(unknown.ok());
  EXPECT_TRUE(IsApiError(unknown.response(), 404, "not_found"));
}

TEST_F(HttpServerTest, WebSocketResumeSinceIsByteExact) {
  const std::string id = Spawn({{"task", "emit:250000:chunk=5000"}});
  ASSERT_TRUE(WaitEnded(id));
  const std::string all = fake_.Output(id);
  for (const uint64_t since :
       {uint64_t{0}, uint64_t{1}, uint64_t{30001}, uint64_t{249999}, uint64_t{250000}}) {
    SCOPED_TRACE(since);
    WsClient ws(port_, WsTarget(id, "?since=" + std::to_string(since)), kToken);
    ASSERT_TRUE(ws.ok()) << ws.status();
    Received r;
    ReadCatchup(ws, &r);
    EXPECT_EQ(r.data, "");
    EXPECT_EQ(r.next, since);
    ReadUntilExit(ws, &r);
    ASSERT_TRUE(r.exit);
    EXPECT_TRUE(SameBytes(r.data, all.substr(since)));
    EXPECT_EQ((*r.exit)["offset"], 250000);
  }
  // While it runs, too: resume from the middle of live output.
  const std::string live = Spawn({{"task", "emit:200000:chunk=2000:every=1"}});
  ASSERT_TRUE(
      fake_.WaitUntil([&](const FakeSupervisor& f) { return f.OutputBytes(live) > 50000; }, kWait));
  WsClient ws(port_, WsTarget(live, "?since=12345"), kToken);
  Received r;
  ReadCatchup(ws, &r);
  ReadUntilExit(ws, &r);
  ASSERT_TRUE(r.exit);
  EXPECT_TRUE(SameBytes(r.data, FakeSupervisor::Pattern(12345, 200000 - 12345)));
  // A bad offset is refused before the upgrade; so is one past the end of the output.
  WsClient bad(port_, WsTarget(live, "?since=abc"), kToken);
  EXPECT_TRUE(IsApiError(bad.response(), 400, "bad_request", "?since"));
  WsClient past(port_, WsTarget(id, "?since=250001"), kToken);
  EXPECT_FALSE(past.ok());
  EXPECT_TRUE(IsApiError(past.response(), 400, "bad_request", "?since"));
}

// The hub unsubscribes when the last client leaves and subscribes again for the next one.
TEST_F(HttpServerTest, WebSocketClientsComeAndGo) {
  const std::string id = Spawn({{"task", "idle"}});
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    const uint64_t subscribes = fake_.requests(wire::RequestType::kSubscribe);
    const uint64_t start = fake_.OutputBytes(id);
    {
      WsClient ws(port_, WsTarget(id, "?since=" + std::to_string(start)), kToken);
      ASSERT_TRUE(ws.ok());
      Received r;
      ReadCatchup(ws, &r);
      ASSERT_TRUE(fake_.WaitUntil(
          [&](const FakeSupervisor& f) {
            return f.requests(wire::RequestType::kSubscribe) > subscribes;
          },
          kWait));
      const std::string line = "round " + std::to_string(round) + "\n";
      fake_.Append(id, wire::OutputStream::kStdout, line);
      while (r.data.size() < line.size()) ASSERT_TRUE(Take(ws.Read(), &r));
      EXPECT_EQ(r.data, line);
    }
    ASSERT_TRUE(fake_.WaitUntil(
        [&](const FakeSupervisor& f) {
          return f.requests(wire::RequestType::kUnsubscribe) == static_cast<uint64_t>(round) + 1;
        },
        kWait));
  }
  EXPECT_EQ(Json(Get("/sessions/" + id))["wsClients"], 0);
  WsClient one(port_, WsTarget(id), kToken);
  WsClient two(port_, WsTarget(id), kToken);
  ASSERT_TRUE(one.ok() && two.ok());
  one.Read();
  two.Read();
  EXPECT_EQ(Json(Get("/sessions/" + id))["wsClients"], 2);
}

TEST_F(HttpServerTest, WebSocketCarriesSplitUtf8Characters) {
  const std::string id = Spawn({{"task", "idle"}});
  WsClient ws(port_, WsTarget(id), kToken);
  ASSERT_TRUE(ws.ok());
  Received r;
  ReadCatchup(ws, &r);
  EXPECT_EQ(r.data, "");
  // "€" is E2 82 AC: split across two output events, then "ü" (C3 BC) likewise.
  fake_.Append(id, wire::OutputStream::kStdout, "a\xE2\x82");
  ASSERT_TRUE(
      fake_.WaitUntil([&](const FakeSupervisor& f) { return f.OutputBytes(id) == 3; }, kWait));
  fake_.Append(id, wire::OutputStream::kStdout, "\xAC b\xC3");
  fake_.Append(id, wire::OutputStream::kStdout, "\xBC!");
  fake_.End(id, 0);
  ReadUntilExit(ws, &r);
  ASSERT_TRUE(r.exit);
  EXPECT_EQ(r.data, "a\xE2\x82\xAC b\xC3\xBC!");
  EXPECT_EQ(r.data.find("\xEF\xBF\xBD"), std::string::npos) << "U+FFFD in the stream";
  EXPECT_EQ(r.next, 9u);

  // A character split at the end of the catchup is carried into the next message, too.
  const std::string id2 = Spawn({{"task", "idle"}});
  fake_.Append(id2, wire::OutputStream::kStdout, "x\xE2\x82");
  ASSERT_TRUE(
      fake_.WaitUntil([&](const FakeSupervisor& f) { return f.OutputBytes(id2) == 3; }, kWait));
  WsClient ws2(port_, WsTarget(id2), kToken);
  ASSERT_TRUE(ws2.ok());
  Received r2;
  ReadCatchup(ws2, &r2);
  fake_.Append(id2, wire::OutputStream::kStdout, "\xAC.");
  fake_.End(id2, 0);
  ReadUntilExit(ws2, &r2);
  EXPECT_EQ(r2.data, "x\xE2\x82\xAC.");

  // Bytes that are not UTF-8 become U+FFFD, one per bad byte; /output has the exact bytes.
  const std::string id3 = Spawn({{"task", "idle"}});
  WsClient ws3(port_, WsTarget(id3), kToken);
  Received r3;
  ReadCatchup(ws3, &r3);
  fake_.Append(id3, wire::OutputStream::kStdout, "ok\xFF");
  fake_.End(id3, 0);
  ReadUntilExit(ws3, &r3);
  EXPECT_EQ(r3.data, "ok\xEF\xBF\xBD");
}

TEST_F(HttpServerTest, SlowWebSocketClientLagsButLosesNothing) {
  ApiConfig config = Config();
  config.ws_outbox_bytes = 64 * 1024;
  RestartServer(config);
  constexpr uint64_t kTotal = 8 * 1024 * 1024;
  const std::string id = Spawn({{"task", "idle"}});
  // The slow client takes its catchup, then reads nothing (with a small receive buffer, so
  // the kernel cannot absorb the stream for it).
  WsClient slow(port_, WsTarget(id), kToken, 8192);
  ASSERT_TRUE(slow.ok());
  Received s;
  ReadCatchup(slow, &s);
  WsClient fast(port_, WsTarget(id), kToken);
  ASSERT_TRUE(fast.ok());
  Received f;
  ReadCatchup(fast, &f);
  // Both are live once each has made its second read (the catchup, then the catch-up read
  // that found nothing more): only then does the session start to print.
  ASSERT_TRUE(fake_.WaitUntil(
      [](const FakeSupervisor& fs) { return fs.requests(wire::RequestType::kReadOutput) >= 4; },
      kWait));
  fake_.StartEmit(id, kTotal, 32768);
  ReadUntilExit(fast, &f);
  // The fast one is done while the slow one has not read a byte more. (It may have lagged
  // too: the link hands over up to 64 frames at once, more than a 64 KiB outbox holds.)
  ASSERT_TRUE(f.exit);
  EXPECT_TRUE(SameBytes(f.data, FakeSupervisor::Pattern(f.start, kTotal - f.start)));
  // Now the slow one reads: told it lagged, and still gets every byte in order.
  ReadUntilExit(slow, &s);
  ASSERT_TRUE(s.exit);
  EXPECT_FALSE(s.lagged.empty()) << "the slow client was never told it lagged";
  for (const auto& l : s.lagged) {
    EXPECT_GT(l["resumeFrom"].get<uint64_t>(), s.start);
    EXPECT_LE(l["resumeFrom"].get<uint64_t>(), kTotal);
  }
  EXPECT_TRUE(SameBytes(s.data, FakeSupervisor::Pattern(s.start, kTotal - s.start)));
  EXPECT_EQ((*s.exit)["offset"].get<uint64_t>(), kTotal);
  EXPECT_GE(MetricValue(Get("/metrics").body(), "monkeyproof_api_ws_lagged_total"), 1);
}

// A lone client that lags leaves no live client: the hub drops the session's subscription,
// so the output it will read crosses the control socket once (in its reads), not twice. When
// it has caught up with a running session it subscribes again from its offset.
TEST_F(HttpServerTest, NoLiveClientMeansNoSubscription) {
  ApiConfig config = Config();
  config.ws_outbox_bytes = 64 * 1024;
  RestartServer(config);
  constexpr uint64_t kTotal = 4 * 1024 * 1024;
  const std::string id = Spawn({{"task", "idle"}});
  WsClient slow(port_, WsTarget(id), kToken, 8192);
  ASSERT_TRUE(slow.ok());
  Received s;
  ReadCatchup(slow, &s);
  ASSERT_TRUE(fake_.WaitUntil(
      [](const FakeSupervisor& fs) { return fs.requests(wire::RequestType::kSubscribe) >= 1; },
      kWait));
  // The session keeps running after this (StartEmit would end it).
  for (uint64_t at = 0; at < kTotal; at += 32768) {
    fake_.Append(id, wire::OutputStream::kStdout, FakeSupervisor::Pattern(at, 32768));
  }
  // Without reading, the client falls behind; its lag drops the subscription.
  EXPECT_TRUE(fake_.WaitUntil(
      [](const FakeSupervisor& fs) { return fs.requests(wire::RequestType::kUnsubscribe) >= 1; },
      kWait))
      << "the hub kept its subscription with no live client";
  // Emit more only after it caught up: it went live again, so it subscribed again.
  ASSERT_TRUE(fake_.WaitUntil(
      [&](const FakeSupervisor& fs) { return fs.OutputBytes(id) == kTotal; }, kWait));
  while (s.next < kTotal) ASSERT_TRUE(Take(slow.Read(), &s)) << "stream ended early";
  EXPECT_TRUE(fake_.WaitUntil(
      [](const FakeSupervisor& fs) { return fs.requests(wire::RequestType::kSubscribe) >= 2; },
      kWait))
      << "the caught-up client did not subscribe again";
  fake_.Append(id, wire::OutputStream::kStdout, "tail");
  fake_.End(id, 0);
  ReadUntilExit(slow, &s);
  ASSERT_TRUE(s.exit);
  EXPECT_TRUE(SameBytes(s.data, FakeSupervisor::Pattern(s.start, kTotal - s.start) + "tail"));
}

// Output in tiny chunks that alternate between stdout and stderr: every read_output answer
// stops at the chunk cap, short of its byte limit, so the reads pipelined behind it start at
// the wrong offset. The client must restart its pipeline from where the short answer ended,
// not sweep on through answers it can only throw away.
TEST_F(HttpServerTest, ShortReadsRestartThePipelineAtTheRightOffset) {
  const std::string id = Spawn({{"task", "idle"}});
  constexpr size_t kChunk = 16;
  constexpr size_t kChunks = 64 * 1024;  // 1 MiB; 1,024 chunks (16 KiB) per answer
  std::string want;
  for (size_t i = 0; i < kChunks; ++i) {
    const std::string bytes = FakeSupervisor::Pattern(i * kChunk, kChunk);
    fake_.Append(id, i % 2 ? wire::OutputStream::kStderr : wire::OutputStream::kStdout, bytes);
    want += bytes;
  }
  fake_.End(id, 0);
  const uint64_t reads_before = fake_.requests(wire::RequestType::kReadOutput);
  WsClient ws(port_, WsTarget(id, "?since=0"), kToken);
  ASSERT_TRUE(ws.ok());
  Received r;
  ReadCatchup(ws, &r);
  ReadUntilExit(ws, &r);
  ASSERT_TRUE(r.exit);
  EXPECT_TRUE(SameBytes(r.data, want));
  // Each answer holds at most 1,024 chunks (16 KiB), fewer when the chunk list fills its
  // frame: about 80 answers here. Once answers come back short the client reads one at a
  // time, so only the first pipeline (three reads) is wasted. (A pipeline that went on
  // reading ahead after short answers issued 292 requests here.)
  const uint64_t reads = fake_.requests(wire::RequestType::kReadOutput) - reads_before;
  EXPECT_LE(reads, 100u) << reads << " read_output requests for 1 MiB in 16-byte chunks";
}

TEST_F(HttpServerTest, WebSocketStdinAndClientMessages) {
  const std::string id = Spawn({{"task", "echo"}});
  WsClient ws(port_, WsTarget(id), kToken);
  ASSERT_TRUE(ws.ok());
  Received r;
  ReadCatchup(ws, &r);
  ws.SendText(R"({"type":"stdin","data":"hello\n"})");
  WsMessage echoed = ws.ReadType("stdout");
  ASSERT_TRUE(echoed.ok);
  EXPECT_EQ(echoed.j["data"], "hello\n");
  EXPECT_EQ(echoed.j["offset"], 0);
  EXPECT_EQ(echoed.j["next"], 6);
  ASSERT_TRUE(Take(echoed, &r));
  EXPECT_EQ(fake_.StdinOf(id), "hello\n");
  ws.SendBinary(std::string("bin\0\n", 5));
  ASSERT_TRUE(
      fake_.WaitUntil([&](const FakeSupervisor& f) { return f.StdinOf(id).size() == 11; }, kWait));
  EXPECT_EQ(fake_.StdinOf(id), std::string("hello\nbin\0\n", 11));
  // Large stdin is chunked, in order.
  const std::string big = FakeSupervisor::Pattern(7, 100000);
  ws.SendText(json{{"type", "stdin"}, {"data", big}}.dump());
  ASSERT_TRUE(fake_.WaitUntil(
      [&](const FakeSupervisor& f) { return f.StdinOf(id).size() == 11 + big.size(); }, kWait));
  EXPECT_TRUE(SameBytes(fake_.StdinOf(id).substr(11), big));

  // Messages that cannot be carried out get an error; the connection stays.
  ws.SendText(R"({"type":"nope"})");
  std::vector<json> skipped;
  WsMessage e1 = ws.ReadType("error", &skipped);
  ASSERT_TRUE(e1.ok);
  EXPECT_EQ(e1.j["code"], "bad_request");
  ws.SendText("not json");
  EXPECT_TRUE(ws.ReadType("error", &skipped).ok);
  ws.SendText(R"({"type":"resize","rows":10,"cols":10})");
  WsMessage e3 = ws.ReadType("error", &skipped);
  EXPECT_EQ(e3.j["code"], "wrong_state");
  ws.SendText(R"({"type":"signal","signal":"USR1"})");
  ASSERT_TRUE(
      fake_.WaitUntil([&](const FakeSupervisor& f) { return !f.SignalsOf(id).empty(); }, kWait));
  EXPECT_EQ(fake_.SignalsOf(id), std::vector<int32_t>{10});

  ws.SendText(R"({"type":"close-stdin"})");
  // The echoes read while looking for the errors, then the rest.
  for (const auto& m : skipped) {
    ASSERT_EQ(m["type"], "stdout") << m.dump();
    EXPECT_EQ(m["offset"].get<uint64_t>(), r.next);
    r.data += m["data"].get<std::string>();
    r.next = m["next"].get<uint64_t>();
  }
  ReadUntilExit(ws, &r);
  ASSERT_TRUE(r.exit);
  EXPECT_EQ((*r.exit)["code"], 0);
  EXPECT_TRUE(SameBytes(r.data, fake_.Output(id)));
  ws.Read();
  EXPECT_EQ(ws.close_code(), 1000);
}

TEST_F(HttpServerTest, WebSocketKilledThenExit) {
  const std::string id = Spawn({{"task", "idle"}});
  WsClient ws(port_, WsTarget(id), kToken);
  ASSERT_TRUE(ws.ok());
  Received r;
  ReadCatchup(ws, &r);
  fake_.Append(id, wire::OutputStream::kStderr, "last words\n");
  EXPECT_EQ(Json(Send(bhttp::verb::delete_, "/sessions/" + id)), json::parse(R"({"killed":true})"));
  ReadUntilExit(ws, &r);
  ASSERT_TRUE(r.exit);
  EXPECT_TRUE(r.killed);
  EXPECT_EQ(r.data, "last words\n");
  EXPECT_EQ((*r.exit)["reason"], "killed_by_request");
  EXPECT_EQ((*r.exit)["code"], 128 + 9);
  EXPECT_EQ((*r.exit)["signal"], 9);
  ws.Read();
  EXPECT_EQ(ws.close_code(), 1000);
}

TEST_F(HttpServerTest, WebSocketReportsGaps) {
  const std::string id = Spawn({{"task", "emit:100000:chunk=10000"}});
  ASSERT_TRUE(WaitEnded(id));
  fake_.DropBefore(id, 40000);
  WsClient ws(port_, WsTarget(id, "?since=0"), kToken);
  Received r;
  ReadCatchup(ws, &r);
  ReadUntilExit(ws, &r);
  ASSERT_EQ(r.gaps.size(), 1u);
  EXPECT_EQ(r.gaps[0]["from"], 0);
  EXPECT_EQ(r.gaps[0]["to"], 40000);
  EXPECT_TRUE(SameBytes(r.data, FakeSupervisor::Pattern(40000, 60000)));
}

// The supervisor dropped live output for the API's connection (`lagged`): every client of
// the session re-reads from its own offset and nothing is lost.
TEST_F(HttpServerTest, SupervisorLaggedEventIsCaughtUp) {
  const std::string id = Spawn({{"task", "idle"}});
  WsClient a(port_, WsTarget(id), kToken);
  WsClient b(port_, WsTarget(id, "?since=0"), kToken);
  ASSERT_TRUE(a.ok() && b.ok());
  Received ra, rb;
  ReadCatchup(a, &ra);
  ReadCatchup(b, &rb);
  fake_.Append(id, wire::OutputStream::kStdout, "before\n");
  while (ra.data.size() < 7) ASSERT_TRUE(Take(a.Read(), &ra));
  while (rb.data.size() < 7) ASSERT_TRUE(Take(b.Read(), &rb));
  const std::string dropped = FakeSupervisor::Pattern(0, 100000);
  // Nothing follows but the exit, so only the `lagged` event tells the API of the hole.
  fake_.AppendDropped(id, dropped);
  fake_.End(id, 0);
  ReadUntilExit(a, &ra);
  ReadUntilExit(b, &rb);
  const std::string want = "before\n" + dropped;
  EXPECT_TRUE(SameBytes(ra.data, want));
  EXPECT_TRUE(SameBytes(rb.data, want));
  ASSERT_TRUE(ra.exit && rb.exit);
  EXPECT_EQ((*ra.exit)["offset"], want.size());
}

// ---- The supervisor goes away and comes back.

// A request the supervisor never answered fails with 503 when the link drops.
TEST_F(HttpServerTest, PendingRequestFailsWhenTheSupervisorGoes) {
  auto pending =
      std::async(std::launch::async, [this] { return Post("/sessions", R"({"task":"hang"})"); });
  ASSERT_TRUE(fake_.WaitUntil(
      [](const FakeSupervisor& f) { return f.requests(wire::RequestType::kSpawn) == 1; }, kWait));
  EXPECT_EQ(pending.wait_for(milliseconds(100)), std::future_status::timeout);
  fake_.Stop();
  auto r = pending.get();
  EXPECT_EQ(r.result_int(), 503) << r.body();
  EXPECT_EQ(Json(r).value("code", ""), "unavailable");
  EXPECT_EQ(Header(r, "Retry-After"), "1");
  ASSERT_TRUE(fake_.Start());
  EXPECT_TRUE(WaitReady());
}

TEST_F(HttpServerTest, SupervisorDownGives503AndReconnects) {
  const std::string id = Spawn({{"task", "idle"}});
  fake_.Stop();
  for (const std::string& target :
       std::vector<std::string>{"/sessions", "/sessions/" + id, "/policies"}) {
    auto r = Get(target);
    EXPECT_EQ(r.result_int(), 503) << target << " " << r.body();
    EXPECT_EQ(Json(r).value("code", ""), "unavailable") << target;
    EXPECT_EQ(Header(r, "Retry-After"), "1") << target;
  }
  auto spawn = Post("/sessions", R"({"task":"idle"})");
  EXPECT_EQ(spawn.result_int(), 503);
  auto ready = Get("/readyz");
  EXPECT_EQ(ready.result_int(), 503);
  EXPECT_EQ(Json(ready)["ready"], false);
  EXPECT_FALSE(Header(ready, "Retry-After").empty());
  // The API itself is alive.
  EXPECT_EQ(Get("/livez").result_int(), 200);
  EXPECT_EQ(Get("/health").result_int(), 200);
  EXPECT_EQ(Get("/metrics").result_int(), 200);
  WsClient ws(port_, WsTarget(id), kToken);
  EXPECT_EQ(ws.status(), 503);

  ASSERT_TRUE(fake_.Start());
  ASSERT_TRUE(WaitReady()) << "no reconnect within " << kWait.count() << " ms";
  auto list = Get("/sessions");
  EXPECT_EQ(list.result_int(), 200);
  EXPECT_EQ(Json(list).size(), 1u);
  auto ready2 = Json(Get("/readyz"));
  EXPECT_EQ(ready2["ready"], true);
  EXPECT_EQ(ready2["supervisor"]["version"], "fake-0.0.1");

  // Not ready: 503 with the supervisor's reason.
  fake_.SetReady(false);
  auto not_ready = Get("/readyz");
  EXPECT_EQ(not_ready.result_int(), 503);
  EXPECT_EQ(Json(not_ready)["reason"], "not ready (test)");
}

TEST_F(HttpServerTest, WebSocketResumesAcrossSupervisorRestart) {
  constexpr uint64_t kTotal = 600000;
  const std::string id =
      Spawn({{"task", "emit:" + std::to_string(kTotal) + ":chunk=1000:every=1"}});
  WsClient ws(port_, WsTarget(id), kToken);
  ASSERT_TRUE(ws.ok());
  Received r;
  ReadCatchup(ws, &r);
  while (r.next < 60000) ASSERT_TRUE(Take(ws.Read(), &r));
  fake_.Stop();
  const uint64_t at_stop = fake_.OutputBytes(id);
  EXPECT_LT(at_stop, kTotal) << "emitted everything before the stop; the test proves nothing";
  // The API notices (503), then the supervisor comes back with the session's record.
  ASSERT_TRUE(fake_.WaitUntil(
      [&](const FakeSupervisor&) { return Get("/sessions").result_int() == 503; }, kWait));
  ASSERT_TRUE(fake_.Start());
  ReadUntilExit(ws, &r);
  ASSERT_TRUE(r.exit);
  EXPECT_TRUE(SameBytes(r.data, FakeSupervisor::Pattern(r.start, kTotal - r.start)));
  EXPECT_EQ((*r.exit)["offset"], kTotal);
  ws.Read();
  EXPECT_EQ(ws.close_code(), 1000);
}

// ---- Connection cap.

TEST_F(HttpServerTest, ConnectionCapAnswers503) {
  ApiConfig config = Config();
  config.max_connections = 2;
  RestartServer(config);
  // Two kept-alive connections, each proven accepted by an answer. A connection of an earlier
  // request may not have been reaped yet: retry until both are in.
  auto keep = [&](Connection& c) {
    auto req = MakeRequest(bhttp::verb::get, "/health", kToken);
    req.keep_alive(true);
    return c.Exchange(req).result_int();
  };
  std::optional<Connection> a, b;
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  for (;;) {
    a.emplace(port_);
    b.emplace(port_);
    if (keep(*a) == 200 && keep(*b) == 200) break;
    a.reset();
    b.reset();
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(milliseconds(20));
  }
  auto extra = Get("/health");
  EXPECT_EQ(extra.result_int(), 503) << extra.body();
  EXPECT_EQ(Json(extra).value("code", ""), "unavailable");
  EXPECT_EQ(Header(extra, "Retry-After"), "1");
  // A WebSocket counts too: free one, upgrade on it, and the cap still holds.
  b.reset();
  const std::string id = [&] {
    for (auto until = std::chrono::steady_clock::now() + kWait;
         std::chrono::steady_clock::now() < until;) {
      auto r = Post("/sessions", R"({"task":"idle"})");
      if (r.result_int() == 201) return Json(r).value("id", "");
      std::this_thread::sleep_for(milliseconds(20));
    }
    return std::string();
  }();
  ASSERT_FALSE(id.empty());
  std::optional<WsClient> ws;
  for (auto until = std::chrono::steady_clock::now() + kWait;
       std::chrono::steady_clock::now() < until;) {
    ws.emplace(port_, WsTarget(id), kToken);
    if (ws->ok()) break;
    ws.reset();
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(ws && ws->ok());
  EXPECT_EQ(ws->Read().j.value("type", ""), "catchup");
  EXPECT_EQ(Get("/health").result_int(), 503);
  // And the keep-alive connection still works.
  EXPECT_EQ(keep(*a), 200);
}

// Stopping and destroying the server while clients are still connected (an idle keep-alive
// connection, a WebSocket, a request waiting for the supervisor) must not touch freed memory.
TEST_F(HttpServerTest, StopWithOpenConnections) {
  const std::string id = Spawn({{"task", "idle"}});
  Connection idle(port_);
  auto req = MakeRequest(bhttp::verb::get, "/health", kToken);
  req.keep_alive(true);
  EXPECT_EQ(idle.Exchange(req).result_int(), 200);
  WsClient ws(port_, WsTarget(id), kToken);
  ASSERT_TRUE(ws.ok());
  EXPECT_EQ(ws.Read().j.value("type", ""), "catchup");
  Connection half(port_);
  beast::error_code ec;
  asio::write(half.socket(), asio::buffer(std::string("GET /health HTTP/1.1\r\nHost: x\r\n")), ec);
  StopServer();
  // The server is gone: the clients see the connections end.
  EXPECT_FALSE(ws.Read().ok);
  EXPECT_EQ(idle.Exchange(req).result_int(), 0);
}

// HEAD is answered like GET but without the body, so the connection stays usable.
TEST_F(HttpServerTest, HeadHasNoBody) {
  Connection conn(port_);
  const std::string auth = "Authorization: " + Bearer(kToken) + "\r\n";
  beast::error_code ec;
  asio::write(conn.socket(), asio::buffer("HEAD /version HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n"),
              ec);
  ASSERT_FALSE(ec);
  bhttp::response_parser<bhttp::string_body> head;
  head.skip(true);  // a response to HEAD has no body, whatever its Content-Length says
  bhttp::read(conn.socket(), conn.buffer(), head, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(head.get().result_int(), 200);
  EXPECT_NE(Header(head.get(), "Content-Length"), "0");
  // The next answer on the connection is the GET's, not the rest of the HEAD's.
  asio::write(conn.socket(), asio::buffer("GET /health HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n"),
              ec);
  auto r = conn.Read();
  EXPECT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(r.body(), R"({"ok":true})");
}

// Pipelined requests are answered in order; oversized headers get 431; headers that trickle
// in slower than header_timeout_ms are cut off.
TEST_F(HttpServerTest, PipeliningHeaderLimitAndReadTimeout) {
  ApiConfig config = Config();
  config.header_timeout_ms = 300;
  config.idle_timeout_ms = 10000;
  RestartServer(config);
  const std::string auth = "Authorization: " + Bearer(kToken) + "\r\n";
  {
    Connection conn(port_);
    beast::error_code ec;
    asio::write(conn.socket(),
                asio::buffer("GET /health HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n" +
                             "GET /version HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n"),
                ec);
    auto first = conn.Read();
    auto second = conn.Read();
    EXPECT_EQ(first.body(), R"({"ok":true})");
    EXPECT_EQ(Json(second).value("name", ""), "monkeyproof") << second.body();
  }
  {
    auto big = Raw("GET /health HTTP/1.1\r\nHost: x\r\n" + auth +
                   "X-Big: " + std::string(20000, 'b') + "\r\n\r\n");
    EXPECT_EQ(big.result_int(), 431) << big.body();
  }
  {
    // Cut by the header timeout, that is before the idle timeout (counted from the connect at
    // the earliest) was due: an order of events, not a speed.
    const auto idle_due = std::chrono::steady_clock::now() + milliseconds(config.idle_timeout_ms);
    Connection conn(port_);
    beast::error_code ec;
    asio::write(conn.socket(), asio::buffer(std::string("GET /health HTTP/1.1\r\nHost: x\r\n")),
                ec);
    auto r = conn.Read();  // the rest of the headers never comes
    EXPECT_NE(r.result_int(), 200);
    EXPECT_LT(std::chrono::steady_clock::now(), idle_due)
        << "headers may trickle for the idle timeout";
  }
}

// ---- Informational routes.

TEST_F(HttpServerTest, MetricsOpenApiVersionAndFriends) {
  Spawn({{"task", "idle"}});
  auto m = Get("/metrics");
  ASSERT_EQ(m.result_int(), 200);
  EXPECT_EQ(Header(m, "Content-Type").substr(0, 10), "text/plain");
  const std::string text = m.body();
  EXPECT_NE(text.find("# TYPE monkeyproof_api_"), std::string::npos) << text.substr(0, 500);
  EXPECT_NE(text.find("# HELP monkeyproof_api_"), std::string::npos);
  EXPECT_NE(text.find("_total"), std::string::npos);
  EXPECT_EQ(text.find("s-1"), std::string::npos) << "a per-session label";
  // Every non-comment line is "name[{labels}] value".
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line[0] == '#') continue;
    EXPECT_TRUE(line.starts_with("monkeyproof_") || line.starts_with("process_")) << line;
    EXPECT_NE(line.find(' '), std::string::npos) << line;
  }

  auto o = Get("/openapi.json");
  ASSERT_EQ(o.result_int(), 200);
  EXPECT_EQ(Header(o, "Content-Type"), "application/json");
  auto doc = Json(o);
  ASSERT_FALSE(doc.is_discarded());
  EXPECT_TRUE(doc.contains("openapi"));
  EXPECT_TRUE(doc["paths"].contains("/sessions"));

  auto v = Json(Get("/version"));
  EXPECT_EQ(v["name"], "monkeyproof");
  EXPECT_TRUE(v["version"].is_string());
  EXPECT_EQ(v["supervisor"], "fake-0.0.1");
  EXPECT_EQ(v["protocol"], wire::kProtoVersion);  // the version agreed with the (fake) supervisor

  auto root = Json(Get("/"));
  EXPECT_EQ(root["name"], "monkeyproof");
  EXPECT_EQ(root["status"], "operational");
  EXPECT_EQ(Json(Get("/health")), json::parse(R"({"ok":true})"));
  EXPECT_EQ(Json(Get("/livez")), json::parse(R"({"ok":true})"));
  EXPECT_EQ(Get("/healthz").result_int(), 200);

  auto p = Json(Get("/policies"));
  ASSERT_TRUE(p["policies"].is_array());
  ASSERT_EQ(p["policies"].size(), 3u);
  EXPECT_EQ(p["policies"][0],
            json::parse(R"({"name":"claude","type":"print","description":"an agent",)"
                        R"("bypassesAgentPermissions":true,)"
                        R"("limits":{"memoryMaxBytes":4294967296,"pidsMax":2048,)"
                        R"("cpuMaxPercent":200,"wallSeconds":14400,"idleSeconds":0},)"
                        R"("network":"host"})"));
  EXPECT_EQ(p["policies"][1]["limits"]["cpuMaxPercent"], nullptr) << "no cap is null";
  EXPECT_EQ(p["policies"][1]["network"], "none");
  auto ready = Json(Get("/readyz"));
  EXPECT_EQ(ready["ready"], true);
  EXPECT_EQ(ready["supervisor"]["sessionsActive"], 1);

  // Keep-alive: several requests on one connection.
  Connection conn(port_);
  for (int i = 0; i < 3; ++i) {
    auto req = MakeRequest(bhttp::verb::get, "/version", kToken);
    req.keep_alive(true);
    auto r = conn.Exchange(req);
    EXPECT_EQ(r.result_int(), 200) << i;
  }
}

// The supervisor answers GET /policies a frame at a time; the API asks for every page and
// answers with all of them, in name order.
TEST_F(HttpServerTest, PoliciesAreCollectedFromEveryPage) {
  std::vector<wire::PolicyInfo> many;
  for (int i = 0; i < 300; ++i) {
    wire::PolicyInfo p;
    p.name = "p" + std::to_string(1000 + i);
    p.type = wire::SessionType::kPrint;
    p.description = std::string(wire::kMaxDescriptionBytes, 'd');
    p.memory_max_bytes = uint64_t{1} << 30;
    p.pids_max = 100 + static_cast<uint64_t>(i);
    many.push_back(std::move(p));
  }
  fake_.SetPolicies(many);
  const uint64_t before = fake_.requests(wire::RequestType::kPolicies);
  auto p = Json(Get("/policies"));
  ASSERT_TRUE(p["policies"].is_array());
  ASSERT_EQ(p["policies"].size(), 300u);
  for (size_t i = 0; i < 300; ++i) {
    EXPECT_EQ(p["policies"][i]["name"], many[i].name) << i;
    EXPECT_EQ(p["policies"][i]["limits"]["pidsMax"], many[i].pids_max) << i;
  }
  // 300 entries of about 1.2 KiB cannot share one 64 KiB frame.
  EXPECT_GE(fake_.requests(wire::RequestType::kPolicies) - before, 6u);
}

}  // namespace
}  // namespace mp::http
