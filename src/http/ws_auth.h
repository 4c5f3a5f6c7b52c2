// WebSocket auth by first message (docs/api.md "WebSocket auth"): an upgrade of
// /sessions/{id}/ws that offers the `monkeyproof` subprotocol and carries no credential at all
// (no Authorization header, no `monkeyproof.bearer.` subprotocol, no ?token=) is accepted
// without looking anything up, and its first message must be {"type":"auth","token":"…"} within
// ws_auth_timeout_ms. Nothing is sent to the client before that. A good token runs the route as an
// HTTP upgrade would (scope checks included) and hands the WebSocket to WsSession; anything else (a
// bad or late message, a refused token, an error of the route) closes it with 1008 after an `error`
// message when the route refused. Failures count in the auth limiter like a 401. Runs in
// monkeyproof-api on the io_context thread.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "http/api_context.h"
#include "http/client_stream.h"
#include "http/http_session.h"
#include "http/router.h"

namespace mp::http {

class WsAuthGate : public std::enable_shared_from_this<WsAuthGate> {
 public:
  // Takes over the connection (counted in ctx.connections; the gate or the WsSession it hands
  // over to uncounts it) and its pre-auth entry (`preauth_id` in `preauth_limits`:
  // ctx.connection_limits or ctx.unix_limits; 0 when none), released only once the auth message has
  // authenticated or the gate is gone: a client that never authenticates stays under the
  // per-address cap and may be evicted. `origin` is the audit identity (client and via), `address`
  // the client's address (the limiter's key).
  WsAuthGate(ApiContext& ctx, ClientStream&& stream, HttpRequest request, RouteMatch match,
             AuditOrigin origin, std::string address, ConnectionLimits* preauth_limits,
             ConnectionLimits::Id preauth_id);
  ~WsAuthGate();

  void Run();

 private:
  void OnAccept(boost::beast::error_code ec);
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void ReleasePreauth();
  // Closes with 1008 and `reason` (at most 123 bytes), after `message` when not empty.
  void Refuse(std::string reason, std::string message = {});

  ApiContext& ctx_;
  std::shared_ptr<ApiContext> keep_;
  boost::beast::websocket::stream<ClientStream> ws_;
  std::shared_ptr<HttpRequest> request_;
  RouteMatch match_;
  // Counts a failed auth in the limiter and writes it to the audit log.
  void AuditRefusal(AuthVerdict verdict, wire::AuthFailureReason reason);

  AuditOrigin origin_;
  std::string address_;
  ConnectionLimits* preauth_limits_ = nullptr;
  ConnectionLimits::Id preauth_id_ = 0;
  boost::beast::flat_buffer buffer_;
  std::string refusal_;  // the message being written before the close
  bool handed_over_ = false;
};

}  // namespace mp::http
