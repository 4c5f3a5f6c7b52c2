#include "http/ws_auth.h"

#include <chrono>
#include <utility>

#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "http/principal.h"
#include "http/routes.h"
#include "http/ws_session.h"

namespace mp::http {
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;

namespace {

// The auth message is a token and a type: anything bigger is not one.
constexpr size_t kMaxAuthMessageBytes = 8 * 1024;
// A WebSocket close reason is at most 123 bytes.
constexpr size_t kMaxCloseReason = 123;
// How long a refused client gets to take the refusal and finish the close handshake.
constexpr auto kRefusalTimeout = std::chrono::seconds(2);

}  // namespace

WsAuthGate::WsAuthGate(ApiContext& ctx, ClientStream&& stream, HttpRequest request,
                       RouteMatch match, AuditOrigin origin, std::string address,
                       ConnectionLimits* preauth_limits, ConnectionLimits::Id preauth_id)
    : ctx_(ctx),
      keep_(ctx.shared_from_this()),
      ws_(std::move(stream)),
      request_(std::make_shared<HttpRequest>(std::move(request))),
      match_(std::move(match)),
      origin_(std::move(origin)),
      address_(std::move(address)),
      preauth_limits_(preauth_limits),
      preauth_id_(preauth_id) {}

WsAuthGate::~WsAuthGate() {
  ReleasePreauth();
  if (!handed_over_) --ctx_.connections;
}

void WsAuthGate::ReleasePreauth() {
  if (preauth_id_ != 0) preauth_limits_->Release(std::exchange(preauth_id_, 0));
}

void WsAuthGate::Run() {
  if (preauth_id_ != 0) {
    // Evicted (connection_limits.h) before the auth message: close at once, without a word.
    preauth_limits_->SetEvictor(preauth_id_, [weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        self->preauth_id_ = 0;
        self->ctx_.metrics.CountPreauthEviction();
        beast::get_lowest_layer(self->ws_).close();
      }
    });
  }
  const auto offered = (*request_)[beast::http::field::sec_websocket_protocol];
  WsSession::Configure(ws_, OffersWsProtocol(std::string_view(offered.data(), offered.size())));
  // Until the auth message has come, only the handshake's own timeout and then the auth
  // deadline apply (no idle pings for a client that has not said who it is).
  websocket::stream_base::timeout t{};
  t.handshake_timeout = std::chrono::seconds(30);
  t.idle_timeout = websocket::stream_base::none();
  t.keep_alive_pings = false;
  ws_.set_option(t);
  ws_.read_message_max(kMaxAuthMessageBytes);
  ws_.async_accept(*request_, beast::bind_front_handler(&WsAuthGate::OnAccept, shared_from_this()));
}

void WsAuthGate::OnAccept(beast::error_code ec) {
  if (ec) return;
  beast::get_lowest_layer(ws_).expires_after(
      std::chrono::milliseconds(ctx_.config.ws_auth_timeout_ms));
  ws_.async_read(buffer_, beast::bind_front_handler(&WsAuthGate::OnRead, shared_from_this()));
}

void WsAuthGate::OnRead(beast::error_code ec, size_t) {
  // The deadline closed the socket (timeout), the client went, or sent more than an auth
  // message can be: nothing to answer on a connection that is gone or abusing it. A client
  // that let the deadline pass failed to authenticate, as a wrong token does.
  if (ec) {
    if (ec == beast::error::timeout) {
      uint32_t ignored = 0;
      const auto verdict =
          ctx_.limiter.Judge(false, address_, FailureLimiter::Clock::now(), &ignored);
      ctx_.metrics.CountAuthFailure();
      AuditRefusal(verdict, wire::AuthFailureReason::kWsTimeout);
    }
    return;
  }
  beast::get_lowest_layer(ws_).expires_never();
  const std::string text = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  const auto token = ws_.got_text() ? ParseWsAuthMessage(text) : std::nullopt;
  AuthOutcome auth;
  if (token) auth = Authenticate(ctx_.tokens, ctx_.token_store, *token, WallClockMs());
  uint32_t retry_after = 0;
  switch (ctx_.limiter.Judge(auth.principal.has_value(), address_, FailureLimiter::Clock::now(),
                             &retry_after)) {
    case AuthVerdict::kAllow:
      break;
    case AuthVerdict::kRateLimited:
      ctx_.metrics.CountRateLimited();
      AuditRefusal(AuthVerdict::kRateLimited, auth.failure);
      return Refuse("too many failed auth attempts; retry later");
    case AuthVerdict::kUnauthorized:
      ctx_.metrics.CountAuthFailure();
      AuditRefusal(AuthVerdict::kUnauthorized,
                   token ? auth.failure : wire::AuthFailureReason::kWsMessage);
      return Refuse(token ? (auth.reason.empty() ? "Unauthorized" : auth.reason)
                          : "the first message must be {\"type\":\"auth\",\"token\":\"...\"}");
  }
  // The principal's connection count (max_connections_per_principal), as for an HTTP request.
  PrincipalConnections::Slot slot;
  if (!auth.principal->unrestricted()) {
    auto taken = ctx_.principal_connections.Take(auth.principal->ToString());
    if (!taken) {
      return Refuse("this credential holds its maximum of open connections",
                    nlohmann::json({{"type", "error"},
                                    {"status", 429},
                                    {"code", "capacity"},
                                    {"error", "this credential holds " +
                                                  std::to_string(ctx_.principal_connections.max()) +
                                                  " open connections already "
                                                  "(max_connections_per_principal in api.conf); "
                                                  "close some, then retry"}})
                        .dump());
    }
    slot = std::move(*taken);
  }
  // The route as for an authenticated upgrade: rights, scope, the session, ?since.
  ReleasePreauth();
  auto self = shared_from_this();
  HandleRoute(
      RouteCall{ctx_, *request_, std::move(match_), origin_.client, origin_.via, *auth.principal,
                [self](HttpResponse res) {
                  // The route refused (403, 404, 400 for ?since, 503): its error, then the
                  // close.
                  auto j = nlohmann::json::parse(res.body(), nullptr, false);
                  if (!j.is_object()) j = nlohmann::json::object();
                  j["type"] = "error";
                  j["status"] = res.result_int();
                  self->Refuse(j.value("error", "refused"), j.dump());
                },
                [self, principal = *auth.principal,
                 slot = std::make_shared<PrincipalConnections::Slot>(std::move(slot)),
                 origin = origin_](wire::SessionInfo info, std::optional<uint64_t> since) {
                  self->handed_over_ = true;
                  auto session =
                      std::make_shared<WsSession>(self->ctx_, std::move(self->ws_), std::move(info),
                                                  since, principal, std::move(*slot), origin);
                  session->Start();
                }});
}

void WsAuthGate::AuditRefusal(AuthVerdict verdict, wire::AuthFailureReason reason) {
  const std::string key = AddressKey(address_);
  const std::string route = AuditRouteName(match_.route);
  if (verdict == AuthVerdict::kRateLimited) {
    ctx_.audit.RateLimited(key, origin_, route);
  } else {
    ctx_.audit.AuthFailed(reason, key, origin_, route);
  }
}

void WsAuthGate::Refuse(std::string reason, std::string message) {
  if (reason.size() > kMaxCloseReason) reason.resize(kMaxCloseReason);
  // A client that ignores the refusal (never reads it, never answers the close) is dropped
  // after kRefusalTimeout, not after the handshake's 30 s.
  websocket::stream_base::timeout t{};
  t.handshake_timeout = kRefusalTimeout;
  t.idle_timeout = websocket::stream_base::none();
  t.keep_alive_pings = false;
  ws_.set_option(t);
  beast::get_lowest_layer(ws_).expires_after(kRefusalTimeout);
  auto close = [self = shared_from_this(), reason = std::move(reason)](beast::error_code) {
    self->ws_.async_close(websocket::close_reason(websocket::close_code::policy_error, reason),
                          [self](beast::error_code) {});
  };
  if (message.empty()) return close({});
  refusal_ = std::move(message);
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(refusal_),
                  [close = std::move(close)](beast::error_code ec, size_t) { close(ec); });
}

}  // namespace mp::http
