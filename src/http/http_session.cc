#include "http/http_session.h"

#include <chrono>
#include <tuple>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "http/api_json.h"
#include "http/auth.h"
#include "http/connection_limits.h"
#include "http/principal.h"
#include "http/routes.h"
#include "http/tls.h"
#include "http/ws_auth.h"
#include "http/ws_session.h"

namespace mp::http {
namespace beast = boost::beast;
namespace http = boost::beast::http;

namespace {
// How long a TLS connection waits for the client's close_notify after sending its own.
constexpr std::chrono::seconds kTlsCloseTimeout{5};
}  // namespace

HttpSession::HttpSession(ApiContext& ctx, ClientStream&& stream)
    : ctx_(ctx), keep_(ctx.shared_from_this()), stream_(std::move(stream)) {
  if (stream_.is_unix()) {
    // A Unix socket's client is a local uid, never an address: the failure limiter, the logs
    // and the audit name it so ("unix:uid=1000").
    const auto uid = stream_.peer_uid();
    remote_ = uid ? "unix:uid=" + std::to_string(*uid) : "unix:unknown";
  } else {
    boost::system::error_code ec;
    const auto endpoint = stream_.tcp().socket().remote_endpoint(ec);
    if (!ec) peer_ = ParseIpAddress(endpoint.address().to_string());
    remote_ = peer_ ? peer_->ToString() : "unknown";
  }
  ctx_.metrics.ConnectionOpened();
}

HttpSession::~HttpSession() {
  ReleasePreauth();
  ctx_.metrics.ConnectionClosed();
  if (!upgraded_) --ctx_.connections;  // an upgraded connection is the WsSession's to count
}

void HttpSession::Run() {
  if (!Admit()) return;
  // One deadline from the start to the end of the first request's headers, TLS handshake
  // included: a connection that has not authenticated never idles (DoRead).
  stream_.expires_after(std::chrono::milliseconds(ctx_.config.header_timeout_ms));
  boost::asio::dispatch(
      stream_.get_executor(),
      beast::bind_front_handler(stream_.is_tls() ? &HttpSession::DoHandshake : &HttpSession::DoRead,
                                shared_from_this()));
}

void HttpSession::DoHandshake() {
  // The ClientHello and the handshake run under the deadline Run set for the first headers.
  beast::async_detect_ssl(stream_.tcp(), buffer_,
                          beast::bind_front_handler(&HttpSession::OnDetect, shared_from_this()));
}

void HttpSession::OnDetect(beast::error_code ec, bool tls) {
  if (ec) return;  // the deadline, or the client went away
  if (!tls) {
    RefusePlainHttp();
    return;
  }
  // The bytes detect_ssl read are the start of the ClientHello: the handshake takes them first.
  stream_.tls().async_handshake(
      boost::asio::ssl::stream_base::server, buffer_.data(),
      beast::bind_front_handler(&HttpSession::OnHandshake, shared_from_this()));
}

void HttpSession::OnHandshake(beast::error_code ec, size_t used) {
  // A failed handshake (an old protocol, no shared cipher, a missing or unverified client
  // certificate) has already sent its alert; the connection ends here, unlogged: scanners
  // would fill the journal. metrics counts it.
  if (ec) {
    ctx_.metrics.CountTlsHandshakeFailure();
    return;
  }
  buffer_.consume(used);
  stream_.set_client_principal(VerifiedClientPrincipal(stream_.tls().native_handle()));
  DoRead();
}

void HttpSession::RefusePlainHttp() {
  // What was read is plain text, not TLS: answer in plain text (a client speaking http:// to an
  // https:// address learns why) and close without reading more.
  static const std::string kPlainOnTls = [] {
    const std::string body =
        R"({"error":"this address speaks HTTPS; use an https:// URL","code":"bad_request"})";
    return "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
           "Connection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  ctx_.metrics.CountTlsHandshakeFailure();
  ctx_.metrics.CountResponse(400);
  boost::asio::async_write(stream_.tcp(), boost::asio::buffer(kPlainOnTls),
                           [self = shared_from_this()](beast::error_code, size_t) {
                             self->stream_.ShutdownSocket(boost::asio::socket_base::shutdown_send);
                           });
}

bool HttpSession::Admit() {
  auto evictor = [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->Evict();
  };
  // A Unix socket's connections are in a register of their own, per peer uid: no network
  // connection can evict them (UnixListener admits them against max_connections by evicting
  // network ones), and no local user can hold more than its cap of them idle. Root is exempt
  // from the cap (the operator is never locked out by its own or anyone's idle connections).
  // The socket's mode and group say who may connect at all; the header deadline applies to all.
  ConnectionLimits& limits = stream_.is_unix() ? ctx_.unix_limits : ctx_.connection_limits;
  preauth_limits_ = &limits;
  const std::optional<uint32_t> uid = stream_.is_unix() ? stream_.peer_uid() : std::nullopt;
  // Without per-key limits, but in the register: root on the socket; trusted proxies and
  // unknown peers on the network.
  const bool exempt =
      stream_.is_unix() ? uid == 0u : !peer_ || InNetworks(*peer_, ctx_.config.trusted_proxies);
  if (exempt) {
    preauth_id_ = limits.Track(std::move(evictor));
    return true;
  }
  const std::string key = !stream_.is_unix() ? ConnectionLimits::KeyOf(*peer_)
                          : uid              ? "uid=" + std::to_string(*uid)
                                             : "unknown";
  const auto admission = limits.Open(key, ConnectionLimits::Clock::now(), evictor);
  const auto verdict = admission.verdict;
  if (verdict == ConnectionLimits::Verdict::kAdmit) {
    preauth_id_ = admission.id;
    return true;
  }
  // Refused before a byte is read: a short plain-text answer (also on a TLS listener, as the
  // global cap's), then close.
  static const auto answer = [](std::string_view why) {
    const std::string body =
        R"({"error":")" + std::string(why) + R"(; retry later","code":"unavailable"})";
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  static const std::string kTooMany =
      answer("too many unauthenticated connections from this address");
  static const std::string kTooFast = answer("too many new connections from this address");
  static const std::string kTooManyUnix =
      answer("too many unauthenticated connections from this uid");
  const std::string& text = stream_.is_unix()                                    ? kTooManyUnix
                            : verdict == ConnectionLimits::Verdict::kTooManyOpen ? kTooMany
                                                                                 : kTooFast;
  ctx_.metrics.CountResponse(503);
  stream_.expires_after(kRefusalWriteTimeout);
  stream_.VisitLowest([&](auto& lowest) {
    boost::asio::async_write(
        lowest, boost::asio::buffer(text), [self = shared_from_this()](beast::error_code, size_t) {
          self->stream_.ShutdownSocket(boost::asio::socket_base::shutdown_both);
        });
  });
  return false;
}

void HttpSession::ReleasePreauth() {
  if (preauth_id_ != 0) preauth_limits_->Release(std::exchange(preauth_id_, 0));
}

void HttpSession::Evict() {
  // The register has dropped the entry already. No answer: the connection has had the longest
  // of all to send its request, and its file descriptor is what the new one needs. Closing
  // cancels the pending read or handshake; the session ends with its handler.
  preauth_id_ = 0;
  ctx_.metrics.CountPreauthEviction();
  stream_.close();
}

void HttpSession::DoRead() {
  parser_.emplace();
  parser_->header_limit(ctx_.config.header_limit_bytes);
  parser_->body_limit(ctx_.config.body_limit_bytes);
  if (!authenticated_) {
    // Until a request has authenticated the connection never idles: the next request's line
    // and headers are due header_timeout_ms after the start (the first request: the deadline
    // Run set) or after the previous answer.
    if (!std::exchange(first_request_, false)) {
      stream_.expires_after(std::chrono::milliseconds(ctx_.config.header_timeout_ms));
    }
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&HttpSession::OnHeader, shared_from_this()));
    return;
  }
  // An authenticated keep-alive connection may idle idle_timeout_ms between requests; from a
  // request's first byte its headers are due within header_timeout_ms, so that they cannot
  // trickle in for the idle timeout, and its body within read_timeout_ms after them.
  if (buffer_.size() > 0) {  // pipelined: the next request has begun
    ReadHeader();
    return;
  }
  stream_.expires_after(std::chrono::milliseconds(ctx_.config.idle_timeout_ms));
  stream_.async_read_some(buffer_.prepare(4096),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            if (ec) {
                              if (ec == boost::asio::error::eof || ec == beast::error::timeout)
                                self->ShutdownSend();
                              return;
                            }
                            self->buffer_.commit(n);
                            self->ReadHeader();
                          });
}

void HttpSession::ReadHeader() {
  stream_.expires_after(std::chrono::milliseconds(ctx_.config.header_timeout_ms));
  http::async_read_header(stream_, buffer_, *parser_,
                          beast::bind_front_handler(&HttpSession::OnHeader, shared_from_this()));
}

void HttpSession::OnHeader(beast::error_code ec, size_t) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout) {
    ShutdownSend();
    return;
  }
  if (ec == http::error::header_limit) {
    SendError(431, "bad_request",
              "request headers exceed " + std::to_string(ctx_.config.header_limit_bytes) + " bytes",
              true);
    return;
  }
  // Beast's parser already refuses a Content-Length over body_limit while reading the header.
  if (ec == http::error::body_limit) {
    if (RefuseBodyBeforeAuth()) return;
    SendBodyTooLarge();
    return;
  }
  if (ec) {
    if (ec != boost::asio::error::operation_aborted && ec != boost::asio::error::eof &&
        ec != boost::asio::error::connection_reset) {
      SendError(400, "bad_request", "malformed HTTP request: " + ec.message(), true);
    }
    return;
  }
  const auto& header = parser_->get();
  // Nothing of a body is read, and no 100-continue sent, for a request without a valid
  // credential.
  if (!parser_->is_done() && RefuseBodyBeforeAuth()) return;
  if (const auto length = parser_->content_length();
      length && *length > ctx_.config.body_limit_bytes) {
    SendBodyTooLarge();
    return;
  }
  stream_.expires_after(std::chrono::milliseconds(ctx_.config.read_timeout_ms));
  if (beast::iequals(header[http::field::expect], "100-continue")) {
    // curl asks before sending bodies over 1 KiB; say yes, then read the body.
    auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                   header.version());
    http::async_write(stream_, *cont,
                      [self = shared_from_this(), cont](beast::error_code wec, size_t) {
                        if (!wec) self->ReadBody();
                      });
    return;
  }
  ReadBody();
}

void HttpSession::ReadBody() {
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
}

void HttpSession::OnRead(beast::error_code ec, size_t) {
  if (ec == http::error::body_limit) {
    SendBodyTooLarge();
    return;
  }
  if (ec == beast::error::timeout) {
    SendError(408, "timeout", "request not received within the read timeout", true);
    return;
  }
  if (ec) {
    if (ec != boost::asio::error::operation_aborted && ec != boost::asio::error::eof &&
        ec != boost::asio::error::connection_reset && ec != http::error::end_of_stream) {
      SendError(400, "bad_request", "malformed HTTP request: " + ec.message(), true);
    }
    return;
  }
  Handle(parser_->release());
}

void HttpSession::SendError(int status, const std::string& code, const std::string& message,
                            bool close) {
  HttpResponse res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "application/json");
  res.body() = ApiError{status, code, message, ""}.ToJson();
  res.keep_alive(!close);
  res.prepare_payload();
  Send(std::move(res));
}

void HttpSession::SendBodyTooLarge() {
  discard_ = true;
  // The drain after it has its own deadline (DiscardRest); the answer must go out first.
  stream_.expires_after(kRefusalWriteTimeout);
  SendError(413, "too_large",
            "request body exceeds " + std::to_string(ctx_.config.body_limit_bytes) +
                " bytes (body_limit_bytes in api.conf); a task may have at most " +
                std::to_string(kMaxSpawnTaskBytes) + " bytes",
            true);
}

AuthOutcome HttpSession::Authenticate(const std::optional<std::string>& token) const {
  if (token) return mp::http::Authenticate(ctx_.tokens, ctx_.token_store, *token, WallClockMs());
  AuthOutcome auth;
  auth.failure = wire::AuthFailureReason::kMissing;
  if (const auto& cn = stream_.client_principal()) {
    auth.principal = ctx_.client_principals.Find(*cn);
    auth.failure = wire::AuthFailureReason::kUnlistedCertificate;
  }
  return auth;
}

bool HttpSession::RefuseBodyBeforeAuth() {
  const HttpRequest& request = parser_->get();
  const auto header = request[http::field::authorization];
  // No ?token= here: the query token is for WebSocket upgrades, which have no body.
  const auto token = ExtractToken(std::string_view(header.data(), header.size()), nullptr, false);
  const AuthOutcome auth = Authenticate(token);
  uint32_t retry_after = 0;
  const std::string client = ClientAddress(request);
  const auto verdict = ctx_.limiter.Judge(auth.principal.has_value(), client,
                                          FailureLimiter::Clock::now(), &retry_after);
  // A refusal below drains a little of the body the client may already be sending; an accepted
  // request keeps the drain it had (a 413 later drains longer).
  const auto drain_before = std::make_tuple(discard_, discard_max_bytes_, discard_timeout_);
  discard_ = true;
  discard_max_bytes_ = kRefusalDiscardMaxBytes;
  discard_timeout_ = kRefusalDiscardTimeout;
  if (verdict == AuthVerdict::kAllow) {
    // Authenticated on its headers: a long upload is no longer an unauthenticated connection
    // that a flood of new ones could evict (Handle checks the credential again). It holds its
    // principal's connection slot from now on: a body that never comes must count against
    // max_connections_per_principal, or a scoped token fills the global cap with such waits.
    authenticated_ = true;
    ReleasePreauth();
    if (!HoldPrincipal(request, *auth.principal)) return true;
    std::tie(discard_, discard_max_bytes_, discard_timeout_) = drain_before;
    return false;
  }
  Unauthenticate();
  const auto target = std::string_view(request.target().data(), request.target().size());
  const auto matched = MatchRoute(
      std::string_view(request.method_string().data(), request.method_string().size()), target);
  SendAuthRefusal(request, verdict, retry_after, auth, client,
                  matched.match ? std::optional<Route>(matched.match->route) : std::nullopt);
  return true;
}

bool HttpSession::Unauthenticate() {
  principal_slot_.Reset();
  return std::exchange(authenticated_, false) && preauth_id_ == 0;
}

bool HttpSession::HoldPrincipal(const HttpRequest& request, const Principal& principal) {
  if (principal.unrestricted()) {
    principal_slot_.Reset();
    return true;
  }
  const std::string key = principal.ToString();
  if (principal_slot_.held() && principal_slot_.key() == key) return true;
  principal_slot_.Reset();
  if (auto slot = ctx_.principal_connections.Take(key)) {
    principal_slot_ = std::move(*slot);
    return true;
  }
  authenticated_ = false;
  const std::string cap = std::to_string(ctx_.principal_connections.max());
  auto res = ErrorResponse(
      request, ApiError{429, "capacity",
                        "this credential holds " + cap +
                            " open connections already (max_connections_per_principal in "
                            "api.conf); reuse keep-alive connections or close some, then retry",
                        ""});
  res.set(http::field::retry_after, "1");
  res.keep_alive(false);
  stream_.expires_after(kRefusalWriteTimeout);
  Send(std::move(res));
  return false;
}

void HttpSession::SendAuthRefusal(const HttpRequest& request, AuthVerdict verdict,
                                  uint32_t retry_after, const AuthOutcome& auth,
                                  const std::string& client_address, std::optional<Route> route) {
  const std::string& reason = auth.reason;
  const std::string key = AddressKey(client_address);
  if (verdict == AuthVerdict::kRateLimited) {
    ctx_.audit.RateLimited(key, Origin(client_address), AuditRouteName(route));
  } else {
    ctx_.audit.AuthFailed(auth.failure, key, Origin(client_address), AuditRouteName(route));
  }
  HttpResponse res;
  if (verdict == AuthVerdict::kRateLimited) {
    ctx_.metrics.CountRateLimited();
    res = ErrorResponse(
        request, ApiError{429, "rate_limited", "too many failed auth attempts; retry later", ""});
    res.set(http::field::retry_after, std::to_string(retry_after));
  } else {
    ctx_.metrics.CountAuthFailure();
    res = ErrorResponse(
        request, ApiError{401, "unauthorized", reason.empty() ? "Unauthorized" : reason, ""});
    res.set(http::field::www_authenticate, "Bearer");
  }
  // A body that was not read: the connection cannot carry another request. One that had
  // authenticated before is closed too (Unauthenticate).
  if (discard_ || close_after_refusal_) res.keep_alive(false);
  close_after_refusal_ = false;
  // The answer is small; a client that does not read it does not hold the connection.
  stream_.expires_after(kRefusalWriteTimeout);
  Send(std::move(res));
}

void HttpSession::DiscardRest() {
  constexpr size_t kChunk = 16 * 1024;
  if (!discard_buffer_) {
    discard_buffer_ = std::make_unique<char[]>(kChunk);
    // One deadline for the whole drain, not per read: a trickling client cannot extend it.
    stream_.expires_after(discard_timeout_);
  }
  stream_.async_read_some(boost::asio::buffer(discard_buffer_.get(), kChunk),
                          [self = shared_from_this()](beast::error_code ec, size_t n) {
                            self->discarded_bytes_ += n;
                            // EOF (the client is done), the deadline, an error or the byte budget:
                            // close. The session's last reference goes with this handler, and the
                            // socket with it.
                            if (ec || self->discarded_bytes_ >= self->discard_max_bytes_) return;
                            self->DiscardRest();
                          });
}

void HttpSession::Handle(HttpRequest request) {
  head_ = request.method() == http::verb::head;
  const auto now = FailureLimiter::Clock::now();
  const bool upgrade = boost::beast::websocket::is_upgrade(request);
  // Auth comes first: nothing is routed or looked up for an unauthenticated request. The
  // credential is checked before the limiter is asked (FailureLimiter::Judge): a valid one is
  // never refused because others failed from the same address.
  const auto target = std::string_view(request.target().data(), request.target().size());
  auto matched = MatchRoute(
      std::string_view(request.method_string().data(), request.method_string().size()), target);
  const std::string* query_token = nullptr;
  if (matched.match) {
    auto it = matched.match->query.find("token");
    if (it != matched.match->query.end()) query_token = &it->second;
  }
  // Where the token may be, strongest first (docs/api.md "WebSocket auth"): the Authorization
  // header (when present it decides alone), for an upgrade the `monkeyproof.bearer.`
  // subprotocol, then ?token=.
  const auto header = request[http::field::authorization];
  const std::string_view header_value(header.data(), header.size());
  std::optional<std::string> token;
  const bool no_header = header_value.find_first_not_of(" \t") == std::string_view::npos;
  const auto protocols_field = request[http::field::sec_websocket_protocol];
  const std::string_view protocols(protocols_field.data(), protocols_field.size());
  if (upgrade && no_header) token = WsProtocolToken(protocols);
  // ?token= only on the route it exists for (an upgrade of /sessions/{id}/ws), so that no
  // other URL invites a token into access logs.
  const bool ws_route = upgrade && matched.match && matched.match->route == Route::kWebSocket;
  if (!token) token = ExtractToken(header_value, query_token, ws_route);
  const bool certified = !token && stream_.client_principal() &&
                         ctx_.client_principals.Find(*stream_.client_principal());
  if (!token && !certified && ws_route && no_header && OffersWsProtocol(protocols)) {
    // No credential anywhere, and the client speaks our subprotocol: the credential may come
    // as the first message (ws_auth.h). Nothing is looked up until it has. Without the
    // subprotocol a bare upgrade stays a 401, as it was for the original's clients.
    upgraded_ = true;
    const std::string address = ClientAddress(request);  // behind a trusted proxy, its client's
    std::make_shared<WsAuthGate>(ctx_, std::move(stream_), std::move(request),
                                 std::move(*matched.match), Origin(address), address,
                                 preauth_limits_, std::exchange(preauth_id_, 0))
        ->Run();
    return;
  }
  // An admin token, a scoped one that is neither expired nor revoked (principal.h), or a
  // listed client certificate.
  const AuthOutcome auth = Authenticate(token);
  uint32_t retry_after = 0;
  const std::string client = ClientAddress(request);
  const auto verdict = ctx_.limiter.Judge(auth.principal.has_value(), client, now, &retry_after);
  switch (verdict) {
    case AuthVerdict::kAllow:
      authenticated_ = true;
      ReleasePreauth();
      if (!HoldPrincipal(request, *auth.principal)) return;
      break;
    case AuthVerdict::kRateLimited:
    case AuthVerdict::kUnauthorized:
      close_after_refusal_ = Unauthenticate();
      SendAuthRefusal(request, verdict, retry_after, auth, client,
                      matched.match ? std::optional<Route>(matched.match->route) : std::nullopt);
      return;
  }
  if (!matched.match) {
    switch (matched.failure) {
      case MatchFailure::kMethodNotAllowed: {
        auto res =
            ErrorResponse(request, ApiError{405, "method_not_allowed",
                                            "method not allowed; allowed: " + matched.allow, ""});
        res.set(http::field::allow, matched.allow);
        Send(std::move(res));
        return;
      }
      case MatchFailure::kBadTarget:
        Send(ErrorResponse(request, BadRequest("malformed request target")));
        return;
      case MatchFailure::kNotFound:
        Send(ErrorResponse(request, NotFound()));
        return;
    }
  }
  auto shared_request = std::make_shared<HttpRequest>(std::move(request));
  auto self = shared_from_this();
  const AuditOrigin origin = Origin(client);
  HandleRoute(RouteCall{
      ctx_, *shared_request, std::move(*matched.match), origin.client, origin.via, *auth.principal,
      [self, shared_request](HttpResponse res) { self->Send(std::move(res)); },
      [self, shared_request, principal = *auth.principal, origin](wire::SessionInfo info,
                                                                  std::optional<uint64_t> since) {
        if (!boost::beast::websocket::is_upgrade(*shared_request)) {
          self->Send(
              ErrorResponse(*shared_request, BadRequest("this route needs a WebSocket upgrade")));
          return;
        }
        self->upgraded_ = true;
        auto ws =
            std::make_shared<WsSession>(self->ctx_, std::move(self->stream_), std::move(info),
                                        since, principal, std::move(self->principal_slot_), origin);
        ws->Run(std::move(*shared_request));
      }});
}

AuditOrigin HttpSession::Origin(const std::string& client_address) const {
  return {"api:" + client_address, client_address == remote_ ? std::string() : remote_};
}

std::string HttpSession::ClientAddress(const HttpRequest& request) const {
  if (!peer_ || ctx_.config.trusted_proxies.empty()) return remote_;
  // By name: Beast 1.74's field enum has Forwarded but not X-Forwarded-For.
  const beast::string_view name =
      ctx_.config.forwarded_header == ForwardedHeader::kForwarded ? "Forwarded" : "X-Forwarded-For";
  std::vector<std::string_view> values;
  for (auto [it, end] = request.equal_range(name); it != end; ++it) {
    values.emplace_back(it->value().data(), it->value().size());
  }
  return ClientAddressOf(*peer_, ctx_.config.forwarded_header, values, ctx_.config.trusted_proxies);
}

void HttpSession::Send(HttpResponse response) {
  ctx_.metrics.CountResponse(response.result_int());
  // HEAD is routed as GET: keep its Content-Length, send no body.
  if (std::exchange(head_, false)) response.body().clear();
  const bool close = response.need_eof();
  response_ = std::make_shared<HttpResponse>(std::move(response));
  http::async_write(stream_, *response_,
                    beast::bind_front_handler(&HttpSession::OnWrite, shared_from_this(), close));
}

void HttpSession::OnWrite(bool close, beast::error_code ec, size_t) {
  response_.reset();
  if (ec) return;
  if (close) {
    ShutdownSend();
    return;
  }
  DoRead();
}

void HttpSession::ShutdownSend() {
  if (discard_ && stream_.is_tls()) {
    // TLS reads nothing after close_notify: drain the refused body first; the drain's end
    // closes the connection.
    DiscardRest();
    return;
  }
  stream_.AsyncShutdownSend(kTlsCloseTimeout, [self = shared_from_this()] {
    if (self->discard_) self->DiscardRest();
  });
}

}  // namespace mp::http
