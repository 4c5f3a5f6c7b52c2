// monkeyproof-api over TLS, in process (http/server.h) against the fake supervisor: a plain and a
// TLS listener on 127.0.0.1, clients over real loopback TCP (tls_test_util.h). HTTPS requests
// and a WebSocket over wss; a plain HTTP request on the TLS port answered 400 in plain text; a
// reload of the certificate that live connections survive, a bad one (or a FIFO at its path)
// that keeps the old, symlinked files as certbot makes them;
// client certificates required (none, a foreign one: refused; the CA's: served); the CLI
// (the built monkeyproof binary) over https:// and mTLS; client certificates as credentials
// (tls_client_principals: listed as admin or scoped, unlisted: nothing). Any user.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>

#include "fake_supervisor.h"
#include "http/client_principals.h"
#include "http/server.h"
#include "temp_dir.h"
#include "test_pki.h"
#include "tls_test_util.h"

namespace mp::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace ssl = boost::asio::ssl;
using boost::asio::ip::tcp;
using json = nlohmann::json;
using test::ClientContext;
using test::ClientOptions;
using test::PemPair;
using test::TlsClient;

constexpr std::string_view kToken = "mp-test-token-0123456789abcdefghijklmnopq";

struct Pki {
  PemPair ca = test::MakeSelfSigned({{"test CA"}, true, "", 1});
  PemPair server = test::MakeSigned({{"server-1"}, false, "IP:127.0.0.1", 2}, ca);
  PemPair renewed = test::MakeSigned({{"server-2"}, false, "IP:127.0.0.1", 3}, ca);
  PemPair client = test::MakeSigned({{"machine-1"}, false, "", 4}, ca);
  PemPair other_ca = test::MakeSelfSigned({{"other CA"}, true, "", 5});
  PemPair foreign_client = test::MakeSigned({{"machine-1"}, false, "", 6}, other_ca);
};

const Pki& TestPki() {
  static const Pki pki;
  return pki;
}

bhttp::request<bhttp::string_body> Request(bhttp::verb method, const std::string& target,
                                           const std::string& body = {}) {
  bhttp::request<bhttp::string_body> req{method, target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  req.set(bhttp::field::authorization, "Bearer " + std::string(kToken));
  if (!body.empty()) {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
  }
  return req;
}

// A WebSocket over one TlsClient; `token` in Authorization unless empty.
class WssClient {
 public:
  WssClient(uint16_t port, std::shared_ptr<ssl::context> ctx, const std::string& target,
            const std::string& token = std::string(kToken))
      : tls_(port, std::move(ctx)), ws_(tls_.stream()) {
    if (tls_.handshake_error()) return;
    ws_.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
      if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
    }));
    beast::error_code ec;
    ws_.handshake("127.0.0.1", target, ec);
    ok_ = !ec;
  }
  [[nodiscard]] bool ok() const { return ok_; }
  json Read() {
    beast::error_code ec;
    ws_.read(buffer_, ec);
    if (ec) return json();
    const std::string text = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    return json::parse(text, nullptr, false);
  }
  // Reads until a stdout message carries `needle`; false when the stream ends first.
  bool ReadUntilOutput(const std::string& needle) {
    std::string seen;
    for (int i = 0; i < 100; ++i) {
      const json m = Read();
      if (!m.is_object()) return false;
      if (m.value("type", "") == "stdout" || m.value("type", "") == "catchup") {
        seen += m.value("data", "");
        if (seen.find(needle) != std::string::npos) return true;
      }
    }
    return false;
  }
  void Send(const json& message) {
    beast::error_code ec;
    ws_.text(true);
    ws_.write(boost::asio::buffer(message.dump()), ec);
    EXPECT_FALSE(ec) << ec.message();
  }

 private:
  TlsClient tls_;
  websocket::stream<ssl::stream<tcp::socket>&> ws_;
  beast::flat_buffer buffer_;
  bool ok_ = false;
};

class HttpTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = fake_.Start();
    ASSERT_TRUE(started) << started.error().ToString();
  }
  void TearDown() override {
    StopServer();
    fake_.Stop();
  }

  ApiConfig Config(ClientCerts client_certs = ClientCerts::kNone) {
    ApiConfig c;
    c.listen = {{"127.0.0.1", 0}};
    c.control_socket = fake_.socket_path();
    c.auth_failures_per_minute = 1000;
    c.tls.listen = {{"127.0.0.1", 0}};
    c.tls.cert_file = dir_.Write("cert.pem", TestPki().server.cert);
    c.tls.key_file = dir_.Write("key.pem", TestPki().server.key, 0600);
    if (client_certs != ClientCerts::kNone) {
      c.tls.client_ca_file = dir_.Write("client-ca.pem", TestPki().ca.cert);
      c.tls.client_certs = client_certs;
    }
    return c;
  }

  void StartServer(ApiConfig config) {
    auto tokens = TokenSet::FromTokens({std::string(kToken)});
    ASSERT_TRUE(tokens) << tokens.error().ToString();
    server_ = std::make_unique<Server>(std::move(config), std::move(*tokens));
    auto started = server_->Start();
    ASSERT_TRUE(started) << started.error().ToString();
    ASSERT_EQ(server_->endpoints().size(), 1u);
    ASSERT_EQ(server_->tls_endpoints().size(), 1u);
    plain_port_ = server_->endpoints()[0].port();
    tls_port_ = server_->tls_endpoints()[0].port();
    thread_ = std::thread([s = server_.get()] { s->Run(); });
    ASSERT_TRUE(WaitReady()) << "the API never became ready (its link to the fake supervisor)";
  }

  // /readyz on the plain port answers 200 once the API's link to the fake supervisor is up;
  // before that a session route answers 503 "not connected yet".
  bool WaitReady() {
    const std::string probe = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                              std::string(kToken) + "\r\nConnection: close\r\n\r\n";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (RawExchange(plain_port_, probe).rfind("HTTP/1.1 200 ", 0) == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  void StopServer() {
    if (!server_) return;
    server_->Stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  // Server::ReloadTls on the server's thread, as SIGHUP runs it.
  Result<void> Reload() {
    std::promise<Result<void>> done;
    boost::asio::post(server_->io(), [&] { done.set_value(server_->ReloadTls()); });
    return done.get_future().get();
  }

  std::shared_ptr<ssl::context> Trusting(std::optional<PemPair> cert = std::nullopt) {
    return ClientContext({TestPki().ca.cert, std::move(cert)});
  }

  // Writes `request` on a fresh plain TCP connection to `port`; what came back until EOF.
  std::string RawExchange(uint16_t port, const std::string& request) {
    boost::asio::io_context io;
    tcp::socket socket(io);
    beast::error_code ec;
    socket.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port), ec);
    if (ec) return "connect: " + ec.message();
    test::SocketDeadline deadline(socket.native_handle(), test::kTlsIoDeadline);
    boost::asio::write(socket, boost::asio::buffer(request), ec);
    std::string out;
    char buf[4096];
    while (!ec) {
      const size_t n = socket.read_some(boost::asio::buffer(buf), ec);
      out.append(buf, n);
    }
    return out;
  }

  test::TempDir dir_{"mp-http-tls-test"};
  testing::FakeSupervisor fake_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  uint16_t plain_port_ = 0;
  uint16_t tls_port_ = 0;
};

TEST_F(HttpTlsTest, HttpsRequestsAreServedToClientsThatVerifyTheServer) {
  StartServer(Config());
  TlsClient client(tls_port_, Trusting());
  ASSERT_FALSE(client.handshake_error()) << client.handshake_error().message();
  EXPECT_EQ(client.ServerCn(), "server-1");
  auto r = client.Exchange(Request(bhttp::verb::get, "/sessions"));
  EXPECT_EQ(r.result_int(), 200) << r.body();
  // Keep-alive over TLS: a second request on the same connection.
  r = client.Exchange(Request(bhttp::verb::get, "/healthz"));
  EXPECT_EQ(r.result_int(), 200) << r.body();
  // Control: a client that trusts another CA refuses this server.
  TlsClient wary(tls_port_, ClientContext({TestPki().other_ca.cert}));
  EXPECT_TRUE(wary.handshake_error());
}

TEST_F(HttpTlsTest, PlainHttpOnTheTlsPortIsAnswered400InPlainText) {
  StartServer(Config());
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                              std::string(kToken) + "\r\nConnection: close\r\n\r\n";
  const std::string answer = RawExchange(tls_port_, request);
  EXPECT_EQ(answer.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << answer;
  EXPECT_NE(answer.find(R"("error":"this address speaks HTTPS; use an https:// URL")"),
            std::string::npos)
      << answer;
  // Control: the same bytes on the plain port are served.
  EXPECT_EQ(RawExchange(plain_port_, request).rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
}

TEST_F(HttpTlsTest, WebSocketOverWss) {
  StartServer(Config());
  TlsClient https(tls_port_, Trusting());
  auto created = https.Exchange(Request(bhttp::verb::post, "/sessions", R"({"task":"echo"})"));
  ASSERT_EQ(created.result_int(), 201) << created.body();
  const std::string id = json::parse(created.body()).value("id", "");
  WssClient ws(tls_port_, Trusting(), "/sessions/" + id + "/ws");
  ASSERT_TRUE(ws.ok());
  EXPECT_EQ(ws.Read().value("type", ""), "catchup");
  ws.Send({{"type", "stdin"}, {"data", "hello over wss\n"}});
  EXPECT_TRUE(ws.ReadUntilOutput("hello over wss"));
}

TEST_F(HttpTlsTest, ReloadServesTheNewCertificateAndKeepsLiveConnections) {
  StartServer(Config());
  TlsClient before(tls_port_, Trusting());
  ASSERT_FALSE(before.handshake_error());
  ASSERT_EQ(before.Exchange(Request(bhttp::verb::get, "/healthz")).result_int(), 200);
  auto created = before.Exchange(Request(bhttp::verb::post, "/sessions", R"({"task":"echo"})"));
  ASSERT_EQ(created.result_int(), 201) << created.body();
  const std::string id = json::parse(created.body()).value("id", "");
  WssClient ws(tls_port_, Trusting(), "/sessions/" + id + "/ws");
  ASSERT_TRUE(ws.ok());
  EXPECT_EQ(ws.Read().value("type", ""), "catchup");

  dir_.Write("cert.pem", TestPki().renewed.cert);
  dir_.Write("key.pem", TestPki().renewed.key, 0600);
  auto reloaded = Reload();
  ASSERT_TRUE(reloaded) << reloaded.error().ToString();

  // New handshakes get the new certificate...
  TlsClient after(tls_port_, Trusting());
  ASSERT_FALSE(after.handshake_error());
  EXPECT_EQ(after.ServerCn(), "server-2");
  EXPECT_EQ(after.Exchange(Request(bhttp::verb::get, "/healthz")).result_int(), 200);
  // ...while the connections made before go on: the HTTP one, and the WebSocket.
  EXPECT_EQ(before.ServerCn(), "server-1");
  EXPECT_EQ(before.Exchange(Request(bhttp::verb::get, "/healthz")).result_int(), 200);
  ws.Send({{"type", "stdin"}, {"data", "still here\n"}});
  EXPECT_TRUE(ws.ReadUntilOutput("still here"));
}

TEST_F(HttpTlsTest, ABadFileOnReloadKeepsThePreviousCertificate) {
  StartServer(Config());
  const std::string cert = dir_.Write("cert.pem", "-----BEGIN CERTIFICATE-----\ntruncated\n");
  auto reloaded = Reload();
  ASSERT_FALSE(reloaded);
  const std::string e = reloaded.error().ToString();
  EXPECT_NE(e.find("the previous certificate stays"), std::string::npos) << e;
  EXPECT_NE(e.find("tls_cert \"" + cert + "\" is not a PEM certificate chain"), std::string::npos)
      << e;
  TlsClient client(tls_port_, Trusting());
  ASSERT_FALSE(client.handshake_error()) << client.handshake_error().message();
  EXPECT_EQ(client.ServerCn(), "server-1");
  EXPECT_EQ(client.Exchange(Request(bhttp::verb::get, "/healthz")).result_int(), 200);

  // A key that does not match the (restored) certificate: refused the same way.
  dir_.Write("cert.pem", TestPki().server.cert);
  dir_.Write("key.pem", TestPki().client.key, 0600);
  reloaded = Reload();
  ASSERT_FALSE(reloaded);
  EXPECT_NE(reloaded.error().ToString().find("does not belong to tls_cert"), std::string::npos);
  TlsClient again(tls_port_, Trusting());
  EXPECT_FALSE(again.handshake_error()) << again.handshake_error().message();
}

// A FIFO planted at tls_key (or tls_cert) blocked the reload's open(2) until a writer came,
// and with it the API's only event-loop thread. The reload now returns at once with an error
// naming the file, and the server goes on with the old certificate. If the open blocks again,
// the test opens the FIFO's write end itself so that the server thread can finish.
TEST_F(HttpTlsTest, AFifoAtTheKeyPathFailsTheReloadPromptly) {
  StartServer(Config());
  for (const char* name : {"key.pem", "cert.pem"}) {
    SCOPED_TRACE(name);
    const std::string path = dir_.path() + "/" + name;
    const std::string saved =
        name == std::string("key.pem") ? TestPki().server.key : TestPki().server.cert;
    ASSERT_EQ(::unlink(path.c_str()), 0);
    ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
    auto done = std::make_shared<std::promise<Result<void>>>();
    auto future = done->get_future();
    boost::asio::post(server_->io(), [this, done] { done->set_value(server_->ReloadTls()); });
    if (future.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      const int unblock = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      future.wait();
      if (unblock >= 0) ::close(unblock);
      FAIL() << "the reload blocked on the FIFO at " << path;
    }
    auto reloaded = future.get();
    ASSERT_FALSE(reloaded);
    const std::string e = reloaded.error().ToString();
    EXPECT_NE(e.find("\"" + path + "\" is not a regular file"), std::string::npos) << e;
    EXPECT_NE(e.find("the previous certificate stays"), std::string::npos) << e;
    TlsClient client(tls_port_, Trusting());
    ASSERT_FALSE(client.handshake_error()) << client.handshake_error().message();
    EXPECT_EQ(client.ServerCn(), "server-1");
    EXPECT_EQ(client.Exchange(Request(bhttp::verb::get, "/healthz")).result_int(), 200);
    ASSERT_EQ(::unlink(path.c_str()), 0);
    dir_.Write(name, saved, 0600);
  }
  // Control: with the files back, the reload succeeds.
  auto reloaded = Reload();
  EXPECT_TRUE(reloaded) << reloaded.error().ToString();
}

// Symlinked files, as certbot's live/ directory has them (links into archive/): read through
// the links at start and at a reload that moves the links to the renewed pair.
TEST_F(HttpTlsTest, SymlinkedCertificateFilesAreFollowed) {
  dir_.Mkdir("archive", 0700);
  dir_.Write("archive/cert1.pem", TestPki().server.cert);
  dir_.Write("archive/key1.pem", TestPki().server.key, 0600);
  dir_.Write("archive/cert2.pem", TestPki().renewed.cert);
  dir_.Write("archive/key2.pem", TestPki().renewed.key, 0600);
  ApiConfig config = Config();
  config.tls.cert_file = dir_.path() + "/live-cert.pem";
  config.tls.key_file = dir_.path() + "/live-key.pem";
  ASSERT_EQ(::symlink("archive/cert1.pem", config.tls.cert_file.c_str()), 0);
  ASSERT_EQ(::symlink("archive/key1.pem", config.tls.key_file.c_str()), 0);
  StartServer(config);
  {
    TlsClient client(tls_port_, Trusting());
    ASSERT_FALSE(client.handshake_error()) << client.handshake_error().message();
    EXPECT_EQ(client.ServerCn(), "server-1");
  }
  ASSERT_EQ(::unlink(config.tls.cert_file.c_str()), 0);
  ASSERT_EQ(::unlink(config.tls.key_file.c_str()), 0);
  ASSERT_EQ(::symlink("archive/cert2.pem", config.tls.cert_file.c_str()), 0);
  ASSERT_EQ(::symlink("archive/key2.pem", config.tls.key_file.c_str()), 0);
  auto reloaded = Reload();
  ASSERT_TRUE(reloaded) << reloaded.error().ToString();
  TlsClient client(tls_port_, Trusting());
  ASSERT_FALSE(client.handshake_error()) << client.handshake_error().message();
  EXPECT_EQ(client.ServerCn(), "server-2");
}

TEST_F(HttpTlsTest, RequiredClientCertificates) {
  StartServer(Config(ClientCerts::kRequired));
  auto status = [&](std::shared_ptr<ssl::context> ctx) {
    TlsClient client(tls_port_, std::move(ctx));
    if (client.handshake_error()) return 0;
    return static_cast<int>(client.Exchange(Request(bhttp::verb::get, "/sessions")).result_int());
  };
  EXPECT_EQ(status(Trusting()), 0) << "served without a client certificate";
  EXPECT_EQ(status(ClientContext({TestPki().ca.cert, TestPki().foreign_client})), 0)
      << "served with a certificate of another CA";
  EXPECT_EQ(status(Trusting(TestPki().client)), 200);  // control
  // The plain listener is not affected (loopback, tokens).
  EXPECT_EQ(RawExchange(plain_port_, "GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                         std::string(kToken) + "\r\nConnection: close\r\n\r\n")
                .substr(0, 12),
            "HTTP/1.1 200");
}

// Runs the monkeyproof CLI with `args` (a shell-quoted string) and the test token; its exit
// status and what it printed (stdout and stderr).
std::pair<int, std::string> RunCli(const std::string& args) {
  const std::string command =
      "env -i PATH=/usr/bin:/bin HOME=/nonexistent MONKEYPROOF_TOKEN=" + std::string(kToken) + " " +
      MP_CLI_PATH + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string out;
  std::array<char, 4096> buf{};
  while (const size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// The README's flow from the CLI over https:// with a client certificate: list, run a session
// and stream its output over wss. Controls: without the CA, and without the client
// certificate, the same command fails and says why.
TEST_F(HttpTlsTest, TheCliSpeaksHttpsAndMutualTls) {
  StartServer(Config(ClientCerts::kRequired));
  const std::string url = "--url https://127.0.0.1:" + std::to_string(tls_port_);
  const std::string ca = " --ca-file " + dir_.Write("ca.pem", TestPki().ca.cert);
  const std::string cert = " --client-cert " + dir_.Write("client.pem", TestPki().client.cert) +
                           " --client-key " +
                           dir_.Write("client-key.pem", TestPki().client.key, 0600);

  auto [status, out] = RunCli(url + ca + cert + " ls --json");
  EXPECT_EQ(status, 0) << out;
  EXPECT_TRUE(json::parse(out, nullptr, false).is_array()) << out;
  std::tie(status, out) = RunCli(url + ca + cert + " run -- emit:3000");
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find(testing::FakeSupervisor::Pattern(0, 3000)), std::string::npos) << out;

  std::tie(status, out) = RunCli(url + cert + " ls");
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("certificate verify failed"), std::string::npos) << out;
  EXPECT_NE(out.find("--ca-file"), std::string::npos) << out;
  std::tie(status, out) = RunCli(url + ca + " ls");
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("TLS error"), std::string::npos) << out;
  EXPECT_NE(out.find("--client-cert"), std::string::npos) << out;
}

TEST_F(HttpTlsTest, StartFailsWithAClearErrorForAnUnreadableKey) {
  ApiConfig c = Config();
  c.tls.key_file = dir_.path() + "/no-such-key.pem";
  auto tokens = TokenSet::FromTokens({std::string(kToken)});
  ASSERT_TRUE(tokens);
  Server server(std::move(c), std::move(*tokens));
  auto started = server.Start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().ToString().find("open tls_key \"" + dir_.path() + "/no-such-key.pem\""),
            std::string::npos)
      << started.error().ToString();
}

// ---- Client certificates as credentials (tls_client_principals).

// A request on a fresh TLS connection with `cert` as the client certificate; `token` in
// Authorization when not empty. Status 0 when the handshake failed.
bhttp::response<bhttp::string_body> CertRequest(uint16_t port, const PemPair& cert,
                                                bhttp::verb method, const std::string& target,
                                                const std::string& token,
                                                const std::string& body = {}) {
  TlsClient client(port, ClientContext({TestPki().ca.cert, cert}));
  if (client.handshake_error()) {
    bhttp::response<bhttp::string_body> failed;
    failed.result(0);
    return failed;
  }
  auto req = Request(method, target, body);
  req.erase(bhttp::field::authorization);
  if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
  req.prepare_payload();
  return client.Exchange(std::move(req));
}

TEST_F(HttpTlsTest, AListedCertificateIsACredential) {
  ApiConfig c = Config(ClientCerts::kOptional);
  c.tls.client_principals_file = dir_.Write("principals.json", R"({
    // machine-1 is the test client's CN
    "machine-1": "admin",
    "dashboard": {"sessions": "owner:ops", "rights": ["read"]}
  })");
  StartServer(std::move(c));
  const PemPair& client = TestPki().client;
  EXPECT_EQ(CertRequest(tls_port_, client, bhttp::verb::get, "/sessions", "").result_int(), 200);
  auto created =
      CertRequest(tls_port_, client, bhttp::verb::post, "/sessions", "", R"({"task":"idle"})");
  ASSERT_EQ(created.result_int(), 201) << created.body();
  EXPECT_EQ(json::parse(created.body()).value("createdBy", ""), "cert:machine-1");
  EXPECT_EQ(fake_.last_principal(wire::RequestType::kSpawn), "cert:machine-1");
  // A bearer token, when given, decides: the admin token acts as admin, a wrong one is refused
  // although the certificate alone would do.
  auto as_admin = CertRequest(tls_port_, client, bhttp::verb::post, "/sessions",
                              std::string(kToken), R"({"task":"idle"})");
  ASSERT_EQ(as_admin.result_int(), 201) << as_admin.body();
  EXPECT_EQ(json::parse(as_admin.body()).value("createdBy", ""), "admin");
  EXPECT_EQ(
      CertRequest(tls_port_, client, bhttp::verb::get, "/sessions", "not-the-token").result_int(),
      401);
  // Control: without a certificate the same request needs a token.
  TlsClient bare(tls_port_, Trusting());
  ASSERT_FALSE(bare.handshake_error());
  auto req = Request(bhttp::verb::get, "/sessions");
  req.erase(bhttp::field::authorization);
  EXPECT_EQ(bare.Exchange(std::move(req)).result_int(), 401);
}

TEST_F(HttpTlsTest, AListedCertificateOpensAWebSocketWithoutAToken) {
  ApiConfig c = Config(ClientCerts::kOptional);
  c.tls.client_principals_file = dir_.Write("principals.json", R"({"machine-1": "admin"})");
  StartServer(std::move(c));
  TlsClient https(tls_port_, Trusting());
  auto created = https.Exchange(Request(bhttp::verb::post, "/sessions", R"({"task":"echo"})"));
  ASSERT_EQ(created.result_int(), 201) << created.body();
  const std::string target = "/sessions/" + json::parse(created.body()).value("id", "") + "/ws";
  const auto with_cert = ClientContext({TestPki().ca.cert, TestPki().client});
  WssClient ws(tls_port_, with_cert, target, "");
  ASSERT_TRUE(ws.ok());
  EXPECT_EQ(ws.Read().value("type", ""), "catchup");
  ws.Send({{"type", "stdin"}, {"data", "input as cert:machine-1\n"}});
  EXPECT_TRUE(ws.ReadUntilOutput("input as cert:machine-1"));
  EXPECT_EQ(fake_.last_principal(wire::RequestType::kStdin), "cert:machine-1");
  // Control: the same upgrade without a certificate is refused.
  WssClient bare(tls_port_, Trusting(), target, "");
  EXPECT_FALSE(bare.ok());
}

TEST_F(HttpTlsTest, AnUnlistedCertificateAuthenticatesNothing) {
  ApiConfig c = Config(ClientCerts::kRequired);
  c.tls.client_principals_file = dir_.Write("principals.json", R"({"machine-2": "admin"})");
  StartServer(std::move(c));
  const PemPair& client = TestPki().client;  // CN machine-1, verified, not listed
  auto refused = CertRequest(tls_port_, client, bhttp::verb::get, "/sessions", "");
  EXPECT_EQ(refused.result_int(), 401) << refused.body();
  // It falls back to the bearer token (control: the same connection shape with the token).
  EXPECT_EQ(CertRequest(tls_port_, client, bhttp::verb::get, "/sessions", std::string(kToken))
                .result_int(),
            200);
}

TEST_F(HttpTlsTest, AScopedCertificateHasItsScopeOnly) {
  ApiConfig c = Config(ClientCerts::kRequired);
  c.tls.client_principals_file = dir_.Write(
      "principals.json", R"({"machine-1": {"sessions": "owner:ops", "rights": ["read"]}})");
  StartServer(std::move(c));
  const PemPair& client = TestPki().client;
  EXPECT_EQ(CertRequest(tls_port_, client, bhttp::verb::get, "/sessions", "").result_int(), 200);
  auto create =
      CertRequest(tls_port_, client, bhttp::verb::post, "/sessions", "", R"({"task":"idle"})");
  EXPECT_EQ(create.result_int(), 403) << create.body();
  EXPECT_NE(create.body().find("create right"), std::string::npos) << create.body();
  EXPECT_EQ(CertRequest(tls_port_, client, bhttp::verb::get, "/tokens", "").result_int(), 403);
}

TEST_F(HttpTlsTest, PrincipalsFileProblemsStopTheStart) {
  ApiConfig c = Config(ClientCerts::kRequired);
  c.tls.client_principals_file = dir_.Write(
      "principals.json", R"({"machine-1": {"sessions": "owner:ops", "rights": ["root"]}})");
  auto tokens = TokenSet::FromTokens({std::string(kToken)});
  ASSERT_TRUE(tokens);
  Server server(std::move(c), std::move(*tokens));
  auto started = server.Start();
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().ToString().find("/machine-1/rights/0: unknown right \"root\""),
            std::string::npos)
      << started.error().ToString();
}

TEST(ClientPrincipalsTest, ParseRules) {
  auto ok = ClientPrincipals::Parse(
      R"({"a b": "admin", "ci": {"sessions": "owner:ci", "rights": ["read", "create"],
          "presets": ["claude"], "workspaces": ["/srv/ws/ci"]}})",
      "p.json");
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->size(), 2u);
  const auto admin = ok->Find("a b");
  ASSERT_TRUE(admin);
  EXPECT_TRUE(admin->unrestricted());
  EXPECT_EQ(admin->ToString(), "cert:a b");
  const auto ci = ok->Find("ci");
  ASSERT_TRUE(ci);
  EXPECT_TRUE(ci->Has(Right::kCreate));
  EXPECT_FALSE(ci->Has(Right::kKill));
  EXPECT_EQ(ci->scope->workspaces, (std::vector<std::string>{"/srv/ws/ci"}));
  EXPECT_FALSE(ok->Find("CI"));  // exact match only
  EXPECT_FALSE(ok->Find(""));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[]", "must be a JSON object"},
      {R"({"x": "root"})", "/x: a string entry must be \"admin\""},
      {R"({"x": 1})", "/x: must be \"admin\" or a scope object"},
      {R"({"x": {"rights": ["read"]}})", "/x/sessions: sessions is required"},
      {R"({"x": {"sessions": "owner:a", "rights": ["read"], "ttlSeconds": 5}})",
       "/x/ttlSeconds: unknown member"},
      {R"({"x": {"sessions": "owner:a", "rights": ["create"], "presets": ["claude"]}})",
       "/x/workspaces: the create right needs workspaces"},
      {R"({"": "admin"})", "not a certificate CN"},
      {"{\"" + std::string(65, 'a') + "\": \"admin\"}", "not a certificate CN"},
      {R"({"a\tb": "admin"})", "not a certificate CN"},
      {"{", "p.json: JSON"},
  };
  for (const auto& [text, want] : bad) {
    auto r = ClientPrincipals::Parse(text, "p.json");
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().what.find(want), std::string::npos) << text << " -> " << r.error().what;
  }
}

TEST(ClientPrincipalsTest, ConfigNeedsClientCertificates) {
  auto c = ParseApiConfig("tls_client_principals = /etc/monkeyproof/client-principals.json\n",
                          "api.conf");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().what.find("tls_client_ca"), std::string::npos) << c.error().what;
  auto with_ca = ParseApiConfig(
      "tls_listen = 127.0.0.1:3443\ntls_cert = /c.pem\ntls_key = /k.pem\n"
      "tls_client_ca = /ca.pem\ntls_client_principals = /p.json\n",
      "api.conf");
  ASSERT_TRUE(with_ca) << with_ca.error().ToString();
  EXPECT_EQ(with_ca->tls.client_principals_file, "/p.json");
}

}  // namespace
}  // namespace mp::http
