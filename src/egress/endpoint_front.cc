// The credential gateway's model endpoints (connections.h, egress_session.h): plain HTTP/1.1
// from the session in, the same requests with the real credential out, over TLS to the one
// pinned upstream. Per client connection: read a request head (Beast, head limit and deadline),
// rewrite it, open the upstream once (resolve, address checks, TCP, TLS with SNI and host-name
// verification), then relay the request body and the response through fixed buffers (Beast's
// buffer_body relay: whatever arrives is forwarded at once, so a streamed response reaches the
// client as the upstream sends it), and read the next request on the same connections.
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <cerrno>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/json_strict.h"
#include "egress/connections.h"
#include "egress/egress_session.h"
#include "egress/host_name.h"

namespace mp::egress {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using asio::ip::tcp;

class EndpointTls {
 public:
  EndpointTls() : context(ssl::context::tls_client) {}
  ssl::context context;
};

Result<std::shared_ptr<EndpointTls>> MakeEndpointTls(const ModelEndpoint& endpoint,
                                                     const std::string& ca_file) {
  const std::string what = "model endpoint " + UpstreamUrlText(endpoint.upstream);
  auto tls = std::make_shared<EndpointTls>();
  if (SSL_CTX_set_min_proto_version(tls->context.native_handle(), TLS1_2_VERSION) != 1) {
    return PlainError(what + ": cannot require TLS 1.2");
  }
  boost::system::error_code ec;
  if (ca_file.empty()) {
    tls->context.set_default_verify_paths(ec);
  } else {
    tls->context.load_verify_file(ca_file, ec);
  }
  if (ec) {
    return PlainError(
        what + ": CA certificates from " +
        (ca_file.empty() ? std::string("the system store") : wire::QuoteForError(ca_file)) + ": " +
        ec.message());
  }
  tls->context.set_verify_mode(ssl::verify_peer);
  return tls;
}

namespace {

constexpr size_t kBodyBuffer = 16 * 1024;
constexpr size_t kMaxResponseHead = 64 * 1024;
constexpr uint64_t kNoBodyLimit = std::numeric_limits<uint64_t>::max();

class EndpointFront : public std::enable_shared_from_this<EndpointFront> {
 public:
  EndpointFront(std::shared_ptr<EgressSession> session, tcp::socket client,
                std::shared_ptr<ConnectionSlot> slot, size_t index,
                std::shared_ptr<EndpointTls> tls)
      : session_(std::move(session)),
        endpoint_(session_->config().endpoints[index]),
        client_(std::move(client)),
        slot_(std::move(slot)),
        tls_(std::move(tls)),
        deadline_(client_.get_executor()),
        client_buffer_(session_->config().limits.max_head_bytes + kBodyBuffer),
        upstream_buffer_(kMaxResponseHead + kBodyBuffer),
        body_(new char[kBodyBuffer]) {
    // Beast reads as much as the buffer's free capacity, at least 512 bytes: without room made
    // here every read (one SSL_read) and every body write would be 512 bytes, and the
    // endpoint's CPU per byte many times the TLS it does (bench/README.md, egress_bench).
    client_buffer_.reserve(kBodyBuffer);
    upstream_buffer_.reserve(kBodyBuffer);
  }

  void Start() {
    slot_->close = [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->Abort();
    };
    ReadHead(session_->config().limits.head_timeout);
  }

 private:
  const std::string& Host() const { return endpoint_.upstream.host; }
  // The key alone: a prefix ("Bearer ") ends at the value's last space; keys have none.
  std::string_view Key() const {
    const std::string_view v = endpoint_.value;
    const size_t space = v.rfind(' ');
    return space == std::string_view::npos ? v : v.substr(space + 1);
  }
  static bool Contains(std::string_view haystack, std::string_view needle) {
    if (needle.empty()) return false;
    return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                       [](char a, char b) {
                         const auto lower = [](char c) {
                           return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
                         };
                         return lower(a) == lower(b);
                       }) != haystack.end();
  }

  // The one deadline of the connection: whatever runs when it passes is cut off.
  void Arm(std::chrono::milliseconds after) {
    deadline_.expires_after(after);
    deadline_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->Abort();
    });
  }

  void Abort() {
    if (finished_) return;
    finished_ = true;
    deadline_.cancel();
    ResetClose(client_);
    if (upstream_) {
      boost::system::error_code ignored;
      upstream_->lowest_layer().close(ignored);
    }
    if (in_request_) ReportRequest(false, "cut off before the response ended");
  }

  // Ends after a complete exchange: the client sees an orderly close.
  void Finish() {
    if (finished_) return;
    finished_ = true;
    deadline_.cancel();
    boost::system::error_code ignored;
    client_.shutdown(tcp::socket::shutdown_send, ignored);
    client_.close(ignored);
    if (upstream_) upstream_->lowest_layer().close(ignored);
  }

  void ReportRequest(bool allowed, std::string reason) {
    in_request_ = false;
    session_->Report(Verdict{.listener = "endpoint",
                             .name = Host(),
                             .port = endpoint_.upstream.port,
                             .allowed = allowed,
                             .reason = std::move(reason),
                             .bytes_up = bytes_up_,
                             .bytes_down = bytes_down_});
    bytes_up_ = 0;
    bytes_down_ = 0;
  }

  // ---- The request head.

  void ReadHead(std::chrono::milliseconds deadline) {
    request_.emplace();
    request_->header_limit(static_cast<uint32_t>(session_->config().limits.max_head_bytes));
    request_->body_limit(kNoBodyLimit);
    Arm(deadline);
    http::async_read_header(
        client_, client_buffer_, *request_,
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->OnHead(ec); });
  }

  void OnHead(boost::system::error_code ec) {
    if (finished_) return;
    if (ec == http::error::end_of_stream) return Finish();  // between requests: fine
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      return Refuse(431, "Request Header Fields Too Large",
                    "request head exceeds " +
                        std::to_string(session_->config().limits.max_head_bytes) + " bytes");
    }
    if (ec) return Refuse(400, "Bad Request", "malformed request head: " + ec.message());
    auto& request = request_->get();
    if (request.method() == http::verb::trace) {
      // An upstream that honours TRACE would echo the request, credential and all.
      return Refuse(405, "Method Not Allowed", "TRACE is not forwarded by a model endpoint");
    }
    if (request.method() == http::verb::connect) {
      return Refuse(400, "Bad Request",
                    "CONNECT is not served by a model endpoint: send requests with an "
                    "origin-form target (\"/path\") to this base URL");
    }
    const std::string target(request.target());
    if (target.empty() || target.front() != '/') {
      return Refuse(400, "Bad Request",
                    "a model endpoint takes origin-form targets (\"/path\") only, not " +
                        wire::QuoteForError(target) +
                        " (absolute-form or authority-form: this is no proxy)");
    }
    if (request.find(http::field::transfer_encoding) != request.end() && !request_->chunked()) {
      // Beast frames such a request as bodyless; an upstream might not.
      return Refuse(400, "Bad Request",
                    "a request's Transfer-Encoding must end in chunked (or send Content-Length)");
    }
    in_request_ = true;
    // The framing is written anew from what the parser found, so that the upstream reads the
    // body exactly as it was read here (no second Transfer-Encoding or list-valued
    // Content-Length for it to read otherwise).
    const bool chunked = request_->chunked();
    if (chunked && (request.count(http::field::transfer_encoding) != 1 ||
                    !beast::iequals(request[http::field::transfer_encoding], "chunked"))) {
      return Refuse(400, "Bad Request",
                    "a request's Transfer-Encoding must be exactly \"chunked\", once");
    }
    const auto length = request_->content_length();
    request.erase(http::field::transfer_encoding);
    request.erase(http::field::content_length);
    if (chunked) {
      request.chunked(true);
    } else if (length) {
      request.content_length(*length);
    }
    // Every copy of the credential header the session sent goes; the real one is set.
    request.erase(endpoint_.header);
    request.set(endpoint_.header, endpoint_.value);
    request.set(http::field::host, UpstreamHostHeader(endpoint_.upstream));
    request.target(endpoint_.upstream.path_prefix + target);
    expect_continue_ = false;
    if (auto it = request.find(http::field::expect); it != request.end()) {
      expect_continue_ = beast::iequals(it->value(), "100-continue");
    }
    client_keep_alive_ = request.keep_alive();
    for (const http::field f : {http::field::expect, http::field::proxy_connection,
                                http::field::proxy_authorization, http::field::keep_alive,
                                http::field::upgrade, http::field::te, http::field::connection}) {
      request.erase(f);
    }
    request.keep_alive(client_keep_alive_);
    head_request_ = request.method() == http::verb::head;
    if (upstream_ && !UpstreamStillOpen()) {
      boost::system::error_code ignored;
      upstream_->lowest_layer().close(ignored);
      upstream_.reset();
      upstream_buffer_.clear();
    }
    if (upstream_) return SendHead();
    Arm(session_->config().limits.connect_timeout * 2);  // connect, then the TLS handshake
    session_->OpenPinned(
        Authority{Host(), CanonicalAddress(Host()).has_value(), endpoint_.upstream.port},
        [self = shared_from_this()](std::string refusal, bool timed_out, tcp::socket socket) {
          self->OnConnected(std::move(refusal), timed_out, std::move(socket));
        });
  }

  // ---- The upstream connection.

  // Whether the kept upstream connection can take the next request: nothing may be waiting on
  // it between responses, so readable means the upstream closed it (an idle timeout there) or
  // sent something unasked; either way a new connection is opened instead.
  bool UpstreamStillOpen() {
    if (upstream_buffer_.size() != 0) return false;
    pollfd p{upstream_->lowest_layer().native_handle(), POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 0;
  }

  void OnConnected(std::string refusal, bool timed_out, tcp::socket socket) {
    if (finished_) return;
    if (!refusal.empty()) {
      return timed_out ? Refuse(504, "Gateway Timeout", "upstream " + Host() + ": " + refusal)
                       : Refuse(502, "Bad Gateway", "upstream " + Host() + ": " + refusal);
    }
    upstream_.emplace(std::move(socket), tls_->context);
    SSL* ssl = upstream_->native_handle();
    // SNI carries host names only (RFC 6066 section 3).
    if (!CanonicalAddress(Host()) && SSL_set_tlsext_host_name(ssl, Host().c_str()) != 1) {
      return Refuse(502, "Bad Gateway", "upstream " + Host() + ": cannot set the TLS server name");
    }
    upstream_->set_verify_mode(ssl::verify_peer);
    upstream_->set_verify_callback(ssl::host_name_verification(Host()));
    upstream_->async_handshake(
        ssl::stream_base::client, [self = shared_from_this()](boost::system::error_code ec) {
          if (self->finished_) return;
          if (ec) {
            self->upstream_.reset();
            return self->Refuse(
                502, "Bad Gateway",
                "upstream " + self->Host() + ": TLS handshake failed (" + ec.message() + ")");
          }
          self->SendHead();
        });
  }

  // ---- The request: head, then body.

  void SendHead() {
    session_->CountGatewayRequest();
    Arm(session_->config().limits.idle_timeout);
    request_serializer_.emplace(request_->get());
    if (expect_continue_) {
      // The upstream never sees the Expect header; the client hears "go on" from here.
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(client_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](boost::system::error_code ec, size_t) {
                          if (ec) return self->Abort();
                          self->WriteRequestHead();
                        });
      return;
    }
    WriteRequestHead();
  }

  void WriteRequestHead() {
    http::async_write_header(*upstream_, *request_serializer_,
                             [self = shared_from_this()](boost::system::error_code ec, size_t) {
                               if (self->finished_) return;
                               if (ec) return self->UpstreamFailed("sending the request", ec);
                               self->RelayRequestBody();
                             });
  }

  void RelayRequestBody() {
    if (finished_) return;
    auto& body = request_->get().body();
    if (request_->is_done()) {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
      return WriteRequestBody();
    }
    body.data = body_.get();
    body.size = kBodyBuffer;
    http::async_read_some(client_, client_buffer_, *request_,
                          [self = shared_from_this()](boost::system::error_code ec, size_t) {
                            self->OnRequestBody(ec);
                          });
  }

  void OnRequestBody(boost::system::error_code ec) {
    if (finished_) return;
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return Abort();  // the client went or sent a broken body
    auto& body = request_->get().body();
    const size_t got = kBodyBuffer - body.size;
    if (got == 0 && !request_->is_done()) return RelayRequestBody();
    if (!session_->Account(got, true)) return Abort();
    bytes_up_ += got;
    Arm(session_->config().limits.idle_timeout);
    body.data = got == 0 ? nullptr : body_.get();
    body.size = got;
    body.more = !request_->is_done();
    WriteRequestBody();
  }

  void WriteRequestBody() {
    http::async_write(*upstream_, *request_serializer_,
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (self->finished_) return;
                        if (ec == http::error::need_buffer) ec = {};
                        if (ec) return self->UpstreamFailed("sending the request body", ec);
                        if (self->request_serializer_->is_done()) return self->ReadResponseHead();
                        self->RelayRequestBody();
                      });
  }

  // ---- The response: head, then body, streamed.

  void ReadResponseHead() {
    response_.emplace();
    response_->header_limit(kMaxResponseHead);
    response_->body_limit(kNoBodyLimit);
    if (head_request_) response_->skip(true);
    Arm(session_->config().limits.idle_timeout);
    WatchClient();
    http::async_read_header(*upstream_, upstream_buffer_, *response_,
                            [self = shared_from_this()](boost::system::error_code ec, size_t) {
                              self->OnResponseHead(ec);
                            });
  }

  void OnResponseHead(boost::system::error_code ec) {
    if (finished_) return;
    if (ec) return UpstreamFailed("reading the response", ec);
    auto& response = response_->get();
    const unsigned status = response.result_int();
    if (status == 101) {
      return Refuse(502, "Bad Gateway", "upstream " + Host() + " switched protocols");
    }
    // The upstream's reason phrase is not passed on (an upstream may put the key there: "401
    // bad key sk-..."); the client gets the standard phrase of the status (review rev19, F1).
    response.reason({});
    // Defence in depth: a header that echoes the credential (with its prefix or without, in
    // any case) never reaches the session.
    for (auto it = response.begin(); it != response.end();) {
      const std::string_view value(it->value().data(), it->value().size());
      it = Contains(value, endpoint_.value) || Contains(value, Key()) ? response.erase(it)
                                                                      : std::next(it);
    }
    const bool interim = status >= 100 && status < 200;
    if (!interim) {
      upstream_keep_alive_ = response.keep_alive();
      response.keep_alive(client_keep_alive_ && upstream_keep_alive_);
    }
    response_serializer_.emplace(response);
    head_sent_ = true;
    http::async_write_header(
        client_, *response_serializer_,
        [self = shared_from_this(), interim](boost::system::error_code wec, size_t) {
          if (self->finished_) return;
          if (wec) return self->Abort();
          // A 1xx response is a head alone; the real one follows.
          if (interim) return self->ReadResponseHead();
          self->RelayResponseBody();
        });
  }

  // While a response is awaited or streams, a client that closes its connection ends the
  // exchange at once, so the upstream stops generating for nobody (else only the idle timeout
  // would). Readable with nothing to read is its EOF; bytes of a pipelined request end the
  // watch and are read after this response.
  void WatchClient() {
    if (watching_ || finished_) return;
    watching_ = true;
    client_.async_wait(
        tcp::socket::wait_read, [weak = weak_from_this()](boost::system::error_code ec) {
          auto self = weak.lock();
          if (!self) return;
          self->watching_ = false;
          if (ec || self->finished_ || !self->in_request_) return;
          char byte = 0;
          const ssize_t n =
              ::recv(self->client_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            self->Abort();
          }
        });
  }

  void RelayResponseBody() {
    if (finished_) return;
    auto& body = response_->get().body();
    if (response_->is_done()) {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
      return WriteResponseBody();
    }
    body.data = body_.get();
    body.size = kBodyBuffer;
    http::async_read_some(*upstream_, upstream_buffer_, *response_,
                          [self = shared_from_this()](boost::system::error_code ec, size_t) {
                            self->OnResponseBody(ec);
                          });
  }

  void OnResponseBody(boost::system::error_code ec) {
    if (finished_) return;
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return Abort();  // the upstream broke off mid-response: so does the client's copy
    auto& body = response_->get().body();
    const size_t got = kBodyBuffer - body.size;
    if (got == 0 && !response_->is_done()) return RelayResponseBody();
    if (!session_->Account(got, false)) return Abort();
    bytes_down_ += got;
    Arm(session_->config().limits.idle_timeout);
    body.data = got == 0 ? nullptr : body_.get();
    body.size = got;
    body.more = !response_->is_done();
    WriteResponseBody();
  }

  void WriteResponseBody() {
    http::async_write(client_, *response_serializer_,
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (self->finished_) return;
                        if (ec == http::error::need_buffer) ec = {};
                        if (ec) return self->Abort();
                        if (!self->response_serializer_->is_done()) {
                          return self->RelayResponseBody();
                        }
                        self->OnExchangeDone();
                      });
  }

  void OnExchangeDone() {
    ReportRequest(true, {});
    head_sent_ = false;
    if (!client_keep_alive_ || !upstream_keep_alive_) return Finish();
    response_serializer_.reset();
    request_serializer_.reset();
    response_.reset();
    ReadHead(session_->config().limits.idle_timeout);
  }

  // ---- Failures.

  void UpstreamFailed(const char* doing, boost::system::error_code ec) {
    if (head_sent_) return Abort();  // the client has part of a response: cut it off
    Refuse(502, "Bad Gateway",
           "upstream " + Host() + ": " + doing + " failed (" + ec.message() + ")");
  }

  // Answers the client with `status` and a text naming what failed (never the credential),
  // then closes both sides.
  void Refuse(int status, const char* phrase, const std::string& why) {
    if (finished_) return;
    finished_ = true;
    deadline_.cancel();
    in_request_ = false;
    session_->Report(Verdict{.listener = "endpoint",
                             .name = Host(),
                             .port = endpoint_.upstream.port,
                             .allowed = false,
                             .reason = why,
                             .bytes_up = bytes_up_,
                             .bytes_down = bytes_down_});
    if (upstream_) {
      boost::system::error_code ignored;
      upstream_->lowest_layer().close(ignored);
    }
    AnswerAndClose(client_, status, phrase, "monkeyproof gateway: " + why + "\n",
                   shared_from_this());
  }

  std::shared_ptr<EgressSession> session_;
  const ModelEndpoint& endpoint_;  // in session_'s config, which outlives this
  tcp::socket client_;
  std::shared_ptr<ConnectionSlot> slot_;
  std::shared_ptr<EndpointTls> tls_;
  asio::steady_timer deadline_;
  beast::flat_buffer client_buffer_;
  beast::flat_buffer upstream_buffer_;
  std::unique_ptr<char[]> body_;  // one buffer: the request and the response take turns
  std::optional<ssl::stream<tcp::socket>> upstream_;
  std::optional<http::request_parser<http::buffer_body>> request_;
  std::optional<http::request_serializer<http::buffer_body>> request_serializer_;
  std::optional<http::response_parser<http::buffer_body>> response_;
  std::optional<http::response_serializer<http::buffer_body>> response_serializer_;
  uint64_t bytes_up_ = 0;
  uint64_t bytes_down_ = 0;
  bool client_keep_alive_ = false;
  bool upstream_keep_alive_ = false;
  bool expect_continue_ = false;
  bool head_request_ = false;
  bool watching_ = false;   // WatchClient's wait is pending
  bool head_sent_ = false;  // the client has (part of) a response
  bool in_request_ = false;
  bool finished_ = false;
};

}  // namespace

void StartEndpointFront(std::shared_ptr<EgressSession> session, tcp::socket client,
                        std::shared_ptr<ConnectionSlot> slot, size_t endpoint,
                        std::shared_ptr<EndpointTls> tls) {
  std::make_shared<EndpointFront>(std::move(session), std::move(client), std::move(slot), endpoint,
                                  std::move(tls))
      ->Start();
}

}  // namespace mp::egress
