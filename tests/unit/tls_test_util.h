// TLS clients and a one-connection TLS server for the tests of monkeyproof-api's TLS
// (tests/unit/http_tls_test.cc, tls_context_test.cc): synchronous Asio SSL streams over real
// loopback TCP, each blocking socket under a deadline that shuts it down, so that a peer that
// never answers fails the test instead of hanging it. Test code only; one thread per object.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "http/tls.h"
#include "test_pki.h"

namespace mp::test {

namespace ssl = boost::asio::ssl;
using boost::asio::ip::tcp;

inline constexpr auto kTlsIoDeadline = std::chrono::seconds(20);

// Shuts `fd` down when `after` passes before the object is destroyed.
class SocketDeadline {
 public:
  SocketDeadline(int fd, std::chrono::milliseconds after)
      : thread_([this, fd, after] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_for(lock, after, [this] { return done_; })) ::shutdown(fd, SHUT_RDWR);
        }) {}
  ~SocketDeadline() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  SocketDeadline(const SocketDeadline&) = delete;
  SocketDeadline& operator=(const SocketDeadline&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

struct ClientOptions {
  std::string trust_pem;                 // CA the client verifies the server with; "" = none
  std::optional<PemPair> cert;           // client certificate (mTLS)
  int min_version = 0, max_version = 0;  // TLS1_1_VERSION, ...; 0 = OpenSSL's default
  bool allow_legacy = false;             // @SECLEVEL=0: lets the client offer TLS 1.0/1.1
};

inline std::shared_ptr<ssl::context> ClientContext(const ClientOptions& o) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (!o.trust_pem.empty()) {
    ctx->add_certificate_authority(boost::asio::buffer(o.trust_pem));
    ctx->set_verify_mode(ssl::verify_peer);
  }
  if (o.cert) {
    ctx->use_certificate_chain(boost::asio::buffer(o.cert->cert));
    ctx->use_private_key(boost::asio::buffer(o.cert->key), ssl::context::pem);
  }
  if (o.allow_legacy) SSL_CTX_set_cipher_list(ctx->native_handle(), "DEFAULT@SECLEVEL=0");
  if (o.min_version != 0) SSL_CTX_set_min_proto_version(ctx->native_handle(), o.min_version);
  if (o.max_version != 0) SSL_CTX_set_max_proto_version(ctx->native_handle(), o.max_version);
  return ctx;
}

// The subject CN of a certificate, "" without one.
inline std::string SubjectCn(X509* cert) {
  if (cert == nullptr) return "";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  return cn;
}

// One TLS client connection to 127.0.0.1:port: connects and handshakes in the constructor
// (handshake_error() says how that went), verifying the server's IP address when the options
// trust a CA.
class TlsClient {
 public:
  TlsClient(uint16_t port, std::shared_ptr<ssl::context> ctx)
      : ctx_(std::move(ctx)), stream_(io_, *ctx_) {
    boost::beast::error_code ec;
    stream_.next_layer().connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port),
                                 ec);
    if (ec) {
      handshake_error_ = ec;
      return;
    }
    deadline_.emplace(stream_.next_layer().native_handle(), kTlsIoDeadline);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(stream_.native_handle()), "127.0.0.1");
    stream_.handshake(ssl::stream_base::client, handshake_error_);
  }
  [[nodiscard]] boost::beast::error_code handshake_error() const { return handshake_error_; }
  ssl::stream<tcp::socket>& stream() { return stream_; }
  [[nodiscard]] std::string ServerCn() {
    X509* cert = SSL_get0_peer_certificate(stream_.native_handle());
    return SubjectCn(cert);
  }
  [[nodiscard]] std::string Protocol() { return SSL_get_version(stream_.native_handle()); }
  [[nodiscard]] std::string Cipher() {
    return SSL_CIPHER_get_name(SSL_get_current_cipher(stream_.native_handle()));
  }

  // Sends `request`, reads the answer; a failure gives status 0 and the error in `error`.
  boost::beast::http::response<boost::beast::http::string_body> Exchange(
      boost::beast::http::request<boost::beast::http::string_body> request,
      boost::beast::error_code* error = nullptr) {
    boost::beast::http::response<boost::beast::http::string_body> response;
    boost::beast::error_code ec;
    request.prepare_payload();
    boost::beast::http::write(stream_, request, ec);
    if (!ec) boost::beast::http::read(stream_, buffer_, response, ec);
    if (ec) response.result(0);
    if (error != nullptr) *error = ec;
    return response;
  }

 private:
  boost::asio::io_context io_;
  std::shared_ptr<ssl::context> ctx_;
  ssl::stream<tcp::socket> stream_;
  boost::beast::flat_buffer buffer_;
  boost::beast::error_code handshake_error_;
  std::optional<SocketDeadline> deadline_;
};

// Accepts one TLS connection on 127.0.0.1 with `context`, handshakes, records what it saw,
// then echoes what it reads until the client goes: the far end of protocol tests (the
// server's own view of a handshake, and a server without our settings as a control).
class OneShotTlsServer {
 public:
  struct Seen {
    bool handshake_ok = false;
    std::string error;                     // the handshake's error
    std::optional<std::string> principal;  // VerifiedClientPrincipal after the handshake
  };

  explicit OneShotTlsServer(std::shared_ptr<ssl::context> context)
      : context_(std::move(context)),
        acceptor_(io_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
        thread_([this] { Serve(); }) {}
  ~OneShotTlsServer() {
    // A client that never connected: let accept() fail.
    if (!accepted_.load()) ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    thread_.join();
  }
  OneShotTlsServer(const OneShotTlsServer&) = delete;
  OneShotTlsServer& operator=(const OneShotTlsServer&) = delete;

  [[nodiscard]] uint16_t port() const { return acceptor_.local_endpoint().port(); }
  Seen Wait() { return seen_.get_future().get(); }

 private:
  void Serve() {
    ssl::stream<tcp::socket> stream(io_, *context_);
    boost::beast::error_code ec;
    acceptor_.accept(stream.next_layer(), ec);
    accepted_ = true;
    Seen seen;
    if (ec) {
      seen.error = ec.message();
      seen_.set_value(seen);
      return;
    }
    SocketDeadline deadline(stream.next_layer().native_handle(), kTlsIoDeadline);
    stream.handshake(ssl::stream_base::server, ec);
    seen.handshake_ok = !ec;
    seen.error = ec ? ec.message() : "";
    if (!ec) seen.principal = http::VerifiedClientPrincipal(stream.native_handle());
    seen_.set_value(seen);
    if (ec) return;
    char buf[4096];
    for (;;) {
      const size_t n = stream.read_some(boost::asio::buffer(buf), ec);
      if (ec) return;
      boost::asio::write(stream, boost::asio::buffer(buf, n), ec);
      if (ec) return;
    }
  }

  boost::asio::io_context io_;
  std::shared_ptr<ssl::context> context_;
  tcp::acceptor acceptor_;
  std::atomic<bool> accepted_{false};
  std::promise<Seen> seen_;
  std::thread thread_;  // last
};

}  // namespace mp::test
