// One HTTP connection of monkeyproof-api: reads requests with size limits and deadlines,
// authenticates each one before anything else, routes it (routes.h) and writes the answer;
// hands WebSocket upgrades to WsSession. One request at a time per connection: the next is
// read only once the answer is written (a pipelining depth of one), which also bounds what a
// client can make us hold. A body over the limit is answered 413, then the rest of it is read
// and dropped (kDiscardMaxBytes, kDiscardTimeout) before the close, so that a client that
// sends the whole body before reading gets the 413 instead of a reset. On a TLS listener the
// connection starts with the TLS handshake (a plain HTTP request there is answered 400 and
// closed). Runs on the io_context thread.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "http/api_context.h"
#include "http/auth.h"
#include "http/client_address.h"
#include "http/client_stream.h"
#include "http/principal.h"

namespace mp::http {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// After a 413 for the body size: read and drop at most this much of the rest, for at most
// this long, then close. TCP resets a connection closed with unread bytes, and the reset
// destroys the answer in the client's receive buffer before it reads it.
inline constexpr size_t kDiscardMaxBytes = size_t{16} * 1024 * 1024;
inline constexpr std::chrono::seconds kDiscardTimeout{10};
// An answer refusing a request before auth (401, 429) must be written within this.
inline constexpr std::chrono::seconds kRefusalWriteTimeout{5};
// A request with a body is authenticated on its headers; the body of one refused there is
// never read, only drained this much for this long after the answer (not kDiscardMaxBytes,
// kDiscardTimeout: those are for authenticated clients).
inline constexpr size_t kRefusalDiscardMaxBytes = size_t{64} * 1024;
inline constexpr std::chrono::seconds kRefusalDiscardTimeout{1};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  // The caller has counted the connection in ctx.connections; the session uncounts it.
  HttpSession(ApiContext& ctx, ClientStream&& stream);
  ~HttpSession();

  void Run();

 private:
  // TLS: the first bytes must be a ClientHello; then the handshake, then DoRead.
  void DoHandshake();
  void OnDetect(boost::beast::error_code ec, bool tls);
  void OnHandshake(boost::beast::error_code ec, size_t used);
  void RefusePlainHttp();
  // Per-address limits at the start (connection_limits.h): false when refused (answered 503
  // and closed). An admitted connection is in the register of unauthenticated connections
  // (trusted proxies and unknown peers too, without per-address limits) until it authenticates.
  bool Admit();
  void ReleasePreauth();
  // Evicted from the register (connection_limits.h) before it authenticated: closes at once.
  void Evict();
  void DoRead();
  void ReadHeader();
  void OnHeader(boost::beast::error_code ec, size_t bytes);
  void ReadBody();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void Handle(HttpRequest request);
  // The address `request` is attributed to: the peer, or what a trusted proxy reports
  // (client_address.h, `trusted_proxies`).
  [[nodiscard]] std::string ClientAddress(const HttpRequest& request) const;
  // The audit log's client ("api:<client address>") and via (the peer, when a trusted proxy
  // reported another client address) for a request attributed to `client_address`.
  [[nodiscard]] AuditOrigin Origin(const std::string& client_address) const;
  void Send(HttpResponse response);
  void OnWrite(bool close, boost::beast::error_code ec, size_t bytes);
  void SendError(int status, const std::string& code, const std::string& message, bool close);
  // 413 for a body over body_limit_bytes; the rest of the body is discarded after the answer.
  void SendBodyTooLarge();
  // For a request with a body, before any of it is read: judges the headers' credential and,
  // unless it is valid, answers 401 or 429 and closes (true). The body is not read.
  bool RefuseBodyBeforeAuth();
  // The request's credential: the bearer token when one was presented (a wrong token is a
  // wrong credential, whatever the certificate), else this connection's verified client
  // certificate when tls_client_principals lists its CN; otherwise no principal.
  [[nodiscard]] AuthOutcome Authenticate(const std::optional<std::string>& token) const;
  // Answers 401 or 429 and writes the refusal to the audit log (ApiAudit, throttled).
  void SendAuthRefusal(const HttpRequest& request, AuthVerdict verdict, uint32_t retry_after,
                       const AuthOutcome& auth, const std::string& client_address,
                       std::optional<Route> route);
  // A request of this connection failed auth: it is no longer authenticated and gives back
  // its principal's slot. One that had authenticated holds no pre-auth slot any more, so it is
  // closed after the answer (true) rather than kept as an uncounted unauthenticated connection.
  bool Unauthenticate();
  // Counts this connection for `principal` (max_connections_per_principal; admin principals
  // are not counted). false: the principal holds its maximum; answered 429 and closed.
  bool HoldPrincipal(const HttpRequest& request, const Principal& principal);
  void DiscardRest();
  // Ends the sending side (TLS: close_notify first), then drains a refused body if asked.
  void ShutdownSend();

  ApiContext& ctx_;
  std::shared_ptr<ApiContext> keep_;
  ClientStream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::string remote_;             // the TCP peer's address
  std::optional<IpAddress> peer_;  // the same, parsed; nullopt when unknown
  bool upgraded_ = false;
  bool authenticated_ = false;                 // the last request on this connection authenticated
  PrincipalConnections::Slot principal_slot_;  // its principal's count, while it has a scope
  bool close_after_refusal_ = false;           // SendAuthRefusal closes (Unauthenticate)
  bool first_request_ = true;                  // the deadline set at the start still runs
  // Its entry in the register of unauthenticated connections until it authenticates (0: none):
  // ctx_.connection_limits, or ctx_.unix_limits for a Unix socket's connection.
  ConnectionLimits* preauth_limits_ = nullptr;
  ConnectionLimits::Id preauth_id_ = 0;
  bool head_ = false;  // the request being answered is a HEAD: its answer goes without body
  std::shared_ptr<HttpResponse> response_;  // the one being written
  bool discard_ = false;                    // drain the request's rest once the answer is written
  size_t discarded_bytes_ = 0;              // drained so far, <= discard_max_bytes_
  size_t discard_max_bytes_ = kDiscardMaxBytes;
  std::chrono::seconds discard_timeout_ = kDiscardTimeout;
  std::unique_ptr<char[]> discard_buffer_;
};

}  // namespace mp::http
